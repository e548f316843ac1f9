// Checkpoint notes, cosignatures, receipts, bundles, the rewritten-log check and reconcile.
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "audit/audit_log.h"
#include "audit/checkpoint.h"
#include "audit/fake_audit_sink.h"
#include "audit/loaded_log.h"
#include "audit/log_check.h"
#include "audit/receipt.h"
#include "audit/reconcile.h"
#include "audit/witness.h"
#include "gtest/gtest.h"
#include "tests/unit/audit_test_util.h"

namespace uop::audit {
namespace {

using testing::BatchEntry;
using testing::FakeClock;
using testing::MemFileSystem;

std::shared_ptr<const Signer> Key(const std::string& name) {
  static auto* keys = new std::map<std::string, std::shared_ptr<const Signer>>();
  auto& k = (*keys)[name];
  if (k == nullptr) k = *Signer::Generate(name);
  return k;
}

TEST(AuditKeysTest, PemAndVkeyRoundTrip) {
  auto signer = *Signer::Generate("helsinki");
  const std::string pem = signer->PrivateKeyPem();
  auto again = Signer::FromPem("helsinki", pem);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->verifier().Vkey(), signer->verifier().Vkey());
  auto pub = Verifier::FromPem("helsinki", signer->verifier().PublicKeyPem());
  ASSERT_TRUE(pub.ok());
  auto vkey = Verifier::FromVkey(signer->verifier().Vkey());
  ASSERT_TRUE(vkey.ok());
  EXPECT_EQ(vkey->public_key(), signer->verifier().public_key());
  EXPECT_TRUE(vkey->Verify("m", signer->Sign("m")));
  EXPECT_FALSE(vkey->Verify("n", signer->Sign("m")));
  // A vkey whose key id does not match its name is refused.
  std::string renamed = signer->verifier().Vkey();
  renamed.replace(0, 8, "tallinn!");
  EXPECT_FALSE(Verifier::FromVkey(renamed).ok());
  // Errors about a private key never quote it.
  absl::Status bad = Signer::FromPem("helsinki", pem.substr(0, pem.size() / 2)).status();
  EXPECT_EQ(bad.message(), "not a PEM private key (PKCS#8)");
}

// Known answers from golang.org/x/mod/sumdb/note (note_test.go), the reference implementation of
// C2SP signed notes: our key IDs, vkey parsing and note signatures agree with it.
TEST(AuditKeysTest, AgreesWithTheGoSignedNoteImplementation) {
  absl::StatusOr<Verifier> peter =
      Verifier::FromVkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  ASSERT_TRUE(peter.ok()) << peter.status();
  EXPECT_EQ(peter->note_key_id(), 0xc74f20a3u);
  const std::string note =
      "If you think cryptography is the answer to your problem,\n"
      "then you don't know what your problem is.\n"
      "\n"
      "\xe2\x80\x94 PeterNeumann "
      "x08go/ZJkuBS9UG/"
      "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
  absl::StatusOr<SignedNote> parsed = ParseNote(note);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->signatures.size(), 1u);
  EXPECT_EQ(parsed->signatures[0].name, "PeterNeumann");
  EXPECT_EQ(parsed->signatures[0].key_id, 0xc74f20a3u);
  EXPECT_TRUE(peter->Verify(parsed->body, parsed->signatures[0].signature));
  EXPECT_EQ(FormatNote(*parsed), note);
  // A vkey whose base64 holds a '+' (transparency-dev/formats, note_cosigv1_test.go).
  EXPECT_TRUE(
      Verifier::FromVkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").ok());
}

TEST(AuditCheckpointTest, SignedNoteFormat) {
  auto signer = Key("helsinki.uop/audit");
  Checkpoint c{"helsinki.uop/audit", 12, LeafHash("x"), 1764680000};
  const std::string note = SignCheckpoint(c, *signer);
  EXPECT_TRUE(absl::StartsWith(
      note, absl::StrCat("helsinki.uop/audit\n12\n", absl::Base64Escape(HashBytes(c.root)),
                         "\ntime 1764680000\n\n\xe2\x80\x94 helsinki.uop/audit ")));
  absl::StatusOr<Checkpoint> back = VerifyCheckpoint(note, signer->verifier());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);
  std::string changed = note;
  changed[note.find("\n12\n") + 2] = '3';  // size 13
  EXPECT_EQ(VerifyCheckpoint(changed, signer->verifier()).status().message(),
            "checkpoint signature by helsinki.uop/audit does not verify");
  EXPECT_EQ(VerifyCheckpoint(note, Key("tallinn")->verifier()).status().message(),
            absl::StrCat("checkpoint has no signature by key ", Key("tallinn")->verifier().Vkey()));
}

TEST(AuditCheckpointTest, CosignatureFollowsTlogCosignatureV1) {
  auto log_key = Key("helsinki");
  auto witness = Key("tallinn");
  const std::string note = SignCheckpoint({"helsinki", 3, LeafHash("a"), 1}, *log_key);
  absl::StatusOr<std::string> cosigned = Cosign(note, *witness, 1764680001);
  ASSERT_TRUE(cosigned.ok());
  int64_t at = 0;
  ASSERT_TRUE(VerifyCosigned(*cosigned, log_key->verifier(), witness->verifier(), &at).ok());
  EXPECT_EQ(at, 1764680001);
  // The signature line is key id, 8-byte timestamp, signature over the cosigned message.
  SignedNote parsed = *ParseNote(*cosigned);
  ASSERT_EQ(parsed.signatures.size(), 2u);
  EXPECT_EQ(parsed.signatures[1].key_id, witness->verifier().cosignature_key_id());
  EXPECT_TRUE(
      witness->verifier().Verify(absl::StrCat("cosignature/v1\ntime 1764680001\n", parsed.body),
                                 parsed.signatures[1].signature.substr(8)));
  EXPECT_EQ(VerifyCosigned(note, log_key->verifier(), witness->verifier()).status().message(),
            "checkpoint has no cosignature by witness tallinn");
  EXPECT_EQ(
      VerifyCosigned(*cosigned, log_key->verifier(), Key("riga")->verifier()).status().message(),
      "checkpoint has no cosignature by witness riga");
}

Receipt SampleReceipt() {
  Entry e = BatchEntry(EntryType::kBatchReceived, "helsinki", 1000, 500);
  e.index = 77;
  e.time_micros = 1764680000123456;
  return *ReceiptFor(e, "tallinn", "helsinki");
}

TEST(AuditReceiptTest, ByteLayoutRoundTripsAndVerifies) {
  const Receipt r = SampleReceipt();
  absl::StatusOr<std::string> bytes = SignReceipt(r, *Key("tallinn"));
  ASSERT_TRUE(bytes.ok());
  // 1 + 4 + (1+7) + (1+8) + (2+18) + 4 + 8 + 8 + 8 + 32 + 8 + 8 + 64
  EXPECT_EQ(bytes->size(), 182u);
  EXPECT_EQ((*bytes)[0], 1);
  EXPECT_EQ(bytes->substr(6, 7), "tallinn");
  absl::StatusOr<Receipt> back = VerifyReceipt(*bytes, Key("tallinn")->verifier());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);
}

TEST(AuditReceiptTest, EveryFlippedByteAndTheWrongKeyAreDetected) {
  const std::string bytes = *SignReceipt(SampleReceipt(), *Key("tallinn"));
  for (size_t p = 0; p < bytes.size(); ++p) {
    std::string bad = bytes;
    bad[p] ^= 0x01;
    EXPECT_FALSE(VerifyReceipt(bad, Key("tallinn")->verifier()).ok()) << p;
  }
  // Signed by another key under the receiver's name.
  auto impostor = *Signer::Generate("tallinn");
  const std::string forged = *SignReceipt(SampleReceipt(), *impostor);
  absl::Status s = VerifyReceipt(forged, Key("tallinn")->verifier()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StartsWith(s.message(), "receipt is from tallinn with key id ")) << s;
}

TEST(AuditReceiptTest, OwnerChecksTheReceiptAgainstWhatItSent) {
  const Receipt r = SampleReceipt();
  Entry sent = BatchEntry(EntryType::kBatchSent, "tallinn", 1000, 500);
  EXPECT_TRUE(CheckReceiptMatches(r, sent).ok());
  Entry other = BatchEntry(EntryType::kBatchSent, "tallinn", 1000, 500, "changed");
  EXPECT_TRUE(
      absl::StartsWith(CheckReceiptMatches(r, other).message(), "receipt batch digest is "));
  sent.record_count = 499;
  EXPECT_EQ(CheckReceiptMatches(r, sent).message(),
            "receipt record count is 500, the batch sent has 499");
}

// The receiver's record stage and the owner's acknowledge handling, against fake sinks: the
// receipt exists only once the entry is durable, and the owner accepts only the exact batch.
TEST(AuditReceiptTest, ReceiptOnlyAfterDurableAndOwnerAcceptsOnlyTheBatchItSent) {
  FakeAuditSink receiver_log;
  receiver_log.set_time_micros(1764680000000001);
  const Entry sent = BatchEntry(EntryType::kBatchSent, "tallinn", 1000, 500);
  Entry received = sent;
  received.type = EntryType::kBatchReceived;
  received.peer = "helsinki";
  std::optional<std::string> ack_receipt;
  receiver_log.Append(received, [&](absl::StatusOr<AppendResult> r) {
    ASSERT_TRUE(r.ok());
    ack_receipt = *SignReceiptFor(received, r->index, r->time_micros, *Key("tallinn"), "helsinki");
  });
  EXPECT_FALSE(ack_receipt.has_value());  // not durable yet: no Ack
  ASSERT_EQ(receiver_log.Complete(), 1u);
  ASSERT_TRUE(ack_receipt.has_value());

  absl::StatusOr<Entry> accepted =
      AcceptReceipt(*ack_receipt, Key("tallinn")->verifier(), "helsinki", sent);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->type, EntryType::kReceipt);
  EXPECT_EQ(accepted->peer, "tallinn");
  EXPECT_EQ(accepted->dataset, "noise");
  EXPECT_EQ(ParseReceipt(accepted->payload)->log_index, 0u);
  EXPECT_EQ(
      AcceptReceipt(*ack_receipt, Key("tallinn")->verifier(), "riga", sent).status().message(),
      "receipt acknowledges a batch of helsinki, not of riga");
  EXPECT_EQ(AcceptReceipt(*ack_receipt, Key("riga")->verifier(), "helsinki", sent).status().code(),
            absl::StatusCode::kUnauthenticated);
  Entry other = sent;
  other.last_offset = 1498;
  EXPECT_EQ(
      AcceptReceipt(*ack_receipt, Key("tallinn")->verifier(), "helsinki", other).status().message(),
      "receipt offset range is 1000..1499, the batch sent has 1000..1498");

  // A log that cannot write: the append fails at once, no receipt, no Ack.
  receiver_log.set_health(absl::UnavailableError("audit log cannot write"));
  bool failed = false;
  receiver_log.Append(received, [&](absl::StatusOr<AppendResult> r) { failed = !r.ok(); });
  EXPECT_TRUE(failed);
  EXPECT_EQ(receiver_log.durable().size(), 1u);
}

// Two nodes exchanging batches, receipts and cosignatures, each with its own log.
class TwoCitiesTest : public ::testing::Test {
 protected:
  static constexpr char kHel[] = "/helsinki";
  static constexpr char kTal[] = "/tallinn";

  std::unique_ptr<AuditLog> Open(const char* dir, const std::string& name) {
    AuditLogOptions o;
    o.fs = &fs_;
    o.clock = &clock_;
    o.checkpoint_every_entries = 1000;
    return *AuditLog::Open(dir, Key(name), o);
  }

  // Helsinki sends `batches` batches to Tallinn; each is received and acknowledged with a
  // receipt that Helsinki verifies and logs. If `witness_after` >= 0, the two cosign each
  // other's checkpoints after that many batches.
  void Exchange(int batches, int witness_after) {
    auto hel = Open(kHel, "helsinki");
    auto tal = Open(kTal, "tallinn");
    ASSERT_TRUE(tal->AppendAndWait(PeerKeyEntry("helsinki")).ok());
    ASSERT_TRUE(hel->AppendAndWait(PeerKeyEntry("tallinn")).ok());
    for (int i = 0; i < batches; ++i) {
      Entry sent = BatchEntry(EntryType::kBatchSent, "tallinn", i * 100, 100);
      ASSERT_TRUE(hel->AppendAndWait(sent).ok());
      Entry received = sent;
      received.type = EntryType::kBatchReceived;
      received.peer = "helsinki";
      if (i == tamper_digest_) received.batch_sha256 = Sha256String("other");
      absl::StatusOr<AppendResult> index = tal->AppendAndWait(received);
      ASSERT_TRUE(index.ok());
      received.index = index->index;
      received.time_micros = index->time_micros;
      const std::string receipt =
          *SignReceipt(*ReceiptFor(received, "tallinn", "helsinki"), *Key("tallinn"));
      absl::StatusOr<Receipt> verified = VerifyReceipt(receipt, Key("tallinn")->verifier());
      ASSERT_TRUE(verified.ok());
      if (i != skip_receipt_) {
        ASSERT_TRUE(hel->AppendAndWait(ReceiptEntry(*verified, receipt, "noise")).ok());
      }
      if (i == witness_after) {
        Witness(*hel, *tal, "helsinki", "tallinn");
        Witness(*tal, *hel, "tallinn", "helsinki");
      }
      clock_.Advance(absl::Seconds(1));
    }
  }

  // `witness` cosigns `subject`'s current checkpoint; both log it.
  void Witness(AuditLog& subject, AuditLog& witness, const std::string& subject_name,
               const std::string& witness_name) {
    SignedCheckpoint c = *subject.CheckpointNow();
    ASSERT_TRUE(VerifyCheckpoint(c.note, Key(subject_name)->verifier()).ok());
    const std::string cosigned =
        *Cosign(c.note, *Key(witness_name), absl::ToUnixSeconds(clock_.Now()));
    Entry kept;
    kept.type = EntryType::kPeerCheckpoint;
    kept.peer = subject_name;
    kept.payload = cosigned;
    ASSERT_TRUE(witness.AppendAndWait(kept).ok());
    Entry returned;
    returned.type = EntryType::kCosignature;
    returned.peer = witness_name;
    returned.payload = cosigned;
    ASSERT_TRUE(subject.AppendAndWait(returned).ok());
    witnessed_[subject_name] = cosigned;
  }

  static Entry PeerKeyEntry(const std::string& peer) {
    Entry e;
    e.type = EntryType::kPeerKey;
    e.peer = peer;
    e.payload = Key(peer)->verifier().Vkey();
    return e;
  }
  static std::string Sha256String(absl::string_view s) { return std::string(HashBytes(Sha256(s))); }

  LoadedLog Load(const char* dir) {
    absl::StatusOr<LoadResult> r = LoadDir(dir, &fs_);
    EXPECT_FALSE(r->failure.has_value());
    return r->log;
  }
  CheckReport Check(const LoadedLog& log, const std::string& name, const std::string& peer) {
    CheckOptions o;
    o.log_key = Key(name)->verifier();
    o.peer_keys = {Key(peer)->verifier()};
    return CheckLog(log, o);
  }

  MemFileSystem fs_;
  FakeClock clock_;
  int tamper_digest_ = -1;
  int skip_receipt_ = -1;
  std::map<std::string, std::string> witnessed_;
};

TEST_F(TwoCitiesTest, BothLogsVerifyWithReceiptsAndCosignatures) {
  Exchange(6, 5);
  CheckReport hel = Check(Load(kHel), "helsinki", "tallinn");
  ASSERT_TRUE(hel.ok()) << hel.failure->ToString();
  EXPECT_EQ(hel.receipts, 6u);
  EXPECT_EQ(hel.cosignatures, 1u);
  EXPECT_EQ(hel.peer_checkpoints, 1u);
  CheckReport tal = Check(Load(kTal), "tallinn", "helsinki");
  ASSERT_TRUE(tal.ok()) << tal.failure->ToString();
  ReconcileReport rec = Reconcile(Load(kHel), hel, Key("helsinki")->verifier(), Load(kTal), tal,
                                  Key("tallinn")->verifier());
  EXPECT_TRUE(rec.log_problems.empty());
  EXPECT_EQ(rec.agreeing, 6u);
  EXPECT_EQ(rec.disagreeing, 0u);
}

TEST_F(TwoCitiesTest, ReceiptByTheWrongKeyInTheLogIsDetected) {
  Exchange(2, -1);
  auto hel = Open(kHel, "helsinki");
  Entry received = BatchEntry(EntryType::kBatchReceived, "helsinki", 900, 10);
  received.index = 3;
  auto impostor = *Signer::Generate("tallinn");
  const std::string forged = *SignReceipt(*ReceiptFor(received, "tallinn", "helsinki"), *impostor);
  ASSERT_TRUE(hel->AppendAndWait(ReceiptEntry(*ParseReceipt(forged), forged, "noise")).ok());
  const uint64_t at = hel->size() - 1;
  hel.reset();
  CheckReport r = Check(Load(kHel), "helsinki", "tallinn");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure->entry, at);
  EXPECT_TRUE(absl::StartsWith(r.failure->reason, "receipt is from tallinn with key id "));
}

TEST_F(TwoCitiesTest, RewrittenLogWithValidSignaturesIsCaughtByThePeersCosignedCheckpoint) {
  Exchange(6, 3);
  // Helsinki's operator rewrites batch 1 (a smaller record count) and rebuilds the log,
  // re-signing every checkpoint with Helsinki's real key: the log verifies on its own...
  LoadedLog original = Load(kHel);
  fs_.Remove(absl::StrCat(kHel, "/", SegmentFileName(1)));
  {
    auto rebuilt = Open(kHel, "helsinki");
    for (const LoadedEntry& le : original.entries) {
      Entry e = le.entry;
      if (e.type == EntryType::kCheckpoint || e.type == EntryType::kCosignature) continue;
      if (e.type == EntryType::kBatchSent && e.first_offset == 100) e.record_count = 90;
      ASSERT_TRUE(rebuilt->AppendAndWait(e).ok());
    }
  }
  LoadedLog rewritten = Load(kHel);
  CheckOptions o;
  o.log_key = Key("helsinki")->verifier();
  o.peer_keys = {Key("tallinn")->verifier()};
  CheckReport alone = CheckLog(rewritten, o);
  ASSERT_TRUE(alone.ok()) << alone.failure->ToString();
  // ...but not against the checkpoint Tallinn cosigned and kept.
  absl::Status s = CheckAgainstWitnessed(rewritten, witnessed_["helsinki"],
                                         Key("helsinki")->verifier(), Key("tallinn")->verifier());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StartsWith(s.message(), "log rewritten: its first ")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), ", tallinn cosigned ")) << s;
  EXPECT_TRUE(CheckAgainstWitnessed(original, witnessed_["helsinki"], Key("helsinki")->verifier(),
                                    Key("tallinn")->verifier())
                  .ok());
  // Reconcile finds it from Tallinn's copy, and the changed count.
  CheckReport tal = Check(Load(kTal), "tallinn", "helsinki");
  ReconcileReport rec = Reconcile(rewritten, alone, Key("helsinki")->verifier(), Load(kTal), tal,
                                  Key("tallinn")->verifier());
  ASSERT_EQ(rec.log_problems.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(rec.log_problems[0],
                               "helsinki's log against the checkpoint tallinn cosigned"));
  bool found = false;
  for (const ReconciledBatch& b : rec.batches) {
    if (b.first_offset == 100 && b.sender == "helsinki") {
      found = true;
      EXPECT_EQ(b.problems[0], "record count differs: sent 90, received 100");
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(TwoCitiesTest, TruncatedLogIsCaughtByThePeersCosignedCheckpoint) {
  Exchange(4, 3);
  LoadedLog log = Load(kHel);
  log.leaves.resize(5);
  absl::Status s = CheckAgainstWitnessed(log, witnessed_["helsinki"], Key("helsinki")->verifier(),
                                         Key("tallinn")->verifier());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StartsWith(s.message(), "log truncated: tallinn cosigned ")) << s;
}

TEST_F(TwoCitiesTest, ReconcileListsEveryDisagreement) {
  tamper_digest_ = 1;
  skip_receipt_ = 2;
  Exchange(5, 3);
  {
    // A batch Helsinki says it sent that Tallinn never logged, after the witnessed range.
    auto hel = Open(kHel, "helsinki");
    ASSERT_TRUE(hel->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 9000, 5)).ok());
  }
  LoadedLog hel = Load(kHel), tal = Load(kTal);
  CheckReport hr = Check(hel, "helsinki", "tallinn"), tr = Check(tal, "tallinn", "helsinki");
  ASSERT_TRUE(hr.ok() && tr.ok());
  ReconcileReport rec =
      Reconcile(hel, hr, Key("helsinki")->verifier(), tal, tr, Key("tallinn")->verifier());
  EXPECT_TRUE(rec.log_problems.empty());
  std::map<int64_t, std::vector<std::string>> problems;
  for (const ReconciledBatch& b : rec.batches) problems[b.first_offset] = b.problems;
  EXPECT_TRUE(problems[0].empty());
  ASSERT_EQ(problems[100].size(), 2u);
  EXPECT_TRUE(absl::StartsWith(problems[100][0], "digest differs: sent "));
  EXPECT_TRUE(absl::StartsWith(problems[100][1], "receipt batch digest is "));
  EXPECT_EQ(problems[200], std::vector<std::string>{"helsinki logged no receipt from tallinn"});
  EXPECT_TRUE(problems[300].empty());
  ASSERT_EQ(problems[400].size(), 2u);  // after the last cosigned checkpoints
  EXPECT_TRUE(absl::StartsWith(problems[400][0], "unwitnessed: helsinki's entry "));
  EXPECT_TRUE(absl::StartsWith(problems[400][1], "unwitnessed: tallinn's entry "));
  ASSERT_GE(problems[9000].size(), 1u);
  EXPECT_EQ(problems[9000][0], "tallinn has no batch_received entry");
  EXPECT_EQ(rec.agreeing, 2u);
  EXPECT_EQ(rec.disagreeing, 4u);
}

TEST_F(TwoCitiesTest, BundleVerifiesElsewhereAndEveryFlippedByteIsDetected) {
  Exchange(3, 2);
  LoadedLog hel = Load(kHel);
  ExportOptions eo;
  eo.peer_keys = {Key("tallinn")->verifier()};
  eo.since_micros = hel.entries[3].entry.time_micros;  // not the first batch
  absl::StatusOr<std::string> bundle = ExportBundle(hel, eo);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  LoadResult loaded = LoadBundle(*bundle, "hel.bundle");
  ASSERT_FALSE(loaded.failure.has_value()) << loaded.failure->ToString();
  EXPECT_LT(loaded.log.entries.size(), hel.entries.size());
  CheckOptions o;
  o.log_key = Key("helsinki")->verifier();
  CheckReport r = CheckLog(loaded.log, o);
  ASSERT_TRUE(r.ok()) << r.failure->ToString();
  EXPECT_EQ(r.receipts, 2u);  // the first batch's receipt is outside the window
  EXPECT_EQ(r.warnings,
            std::vector<std::string>{"key of peer tallinn taken from the bundle manifest"});
  for (size_t p = 0; p < bundle->size(); ++p) {
    std::string bad = *bundle;
    bad[p] ^= 0x01;
    LoadResult l = LoadBundle(bad, "hel.bundle");
    const bool caught = l.failure.has_value() || !CheckLog(l.log, o).ok();
    ASSERT_TRUE(caught) << "flip at " << p;
  }
}

}  // namespace
}  // namespace uop::audit

namespace uop::audit {
namespace {

TEST_F(TwoCitiesTest, WitnessCosignsOnlyAnAppendOnlyHistory) {
  Exchange(3, -1);
  auto hel = Open(kHel, "helsinki");
  const Verifier& hk = Key("helsinki")->verifier();
  SignedCheckpoint first = *hel->CheckpointNow();
  absl::StatusOr<std::string> cosigned =
      WitnessCheckpoint(first.note, hk, std::nullopt, {}, *Key("tallinn"), 1796225041);
  ASSERT_TRUE(cosigned.ok()) << cosigned.status();
  ASSERT_TRUE(VerifyCosigned(*cosigned, hk, Key("tallinn")->verifier()).ok());
  ASSERT_TRUE(hel->AppendAndWait(BatchEntry(EntryType::kBatchSent, "tallinn", 700, 100)).ok());
  SignedCheckpoint second = *hel->CheckpointNow();
  absl::StatusOr<std::vector<Hash>> proof =
      hel->ConsistencyProof(first.checkpoint.size, second.checkpoint.size);
  ASSERT_TRUE(proof.ok()) << proof.status();
  EXPECT_TRUE(
      WitnessCheckpoint(second.note, hk, first.checkpoint, *proof, *Key("tallinn"), 1796225042)
          .ok());
  // The old checkpoint again, or a proof that does not lead to the new one: refused.
  EXPECT_EQ(WitnessCheckpoint(first.note, hk, second.checkpoint, {}, *Key("tallinn"), 1)
                .status()
                .message(),
            absl::StrCat("helsinki's log shrank from ", second.checkpoint.size, " to ",
                         first.checkpoint.size, " entries"));
  std::vector<Hash> bad = *proof;
  bad[0][0] ^= 1;
  absl::Status s =
      WitnessCheckpoint(second.note, hk, first.checkpoint, bad, *Key("tallinn"), 1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StartsWith(
      s.message(), absl::StrCat("helsinki's checkpoint of ", second.checkpoint.size,
                                " entries does not extend the one of ", first.checkpoint.size,
                                " we cosigned: consistency proof: ")))
      << s;
  hel.reset();

  // A rewritten log, re-signed with the real key, cannot prove it extends what was cosigned.
  LoadedLog original = Load(kHel);
  fs_.Remove(absl::StrCat(kHel, "/", SegmentFileName(1)));
  auto rebuilt = Open(kHel, "helsinki");
  for (const LoadedEntry& le : original.entries) {
    Entry e = le.entry;
    if (e.type == EntryType::kCheckpoint) continue;
    if (e.first_offset == 100) e.batch_sha256 = Sha256String("something else");
    ASSERT_TRUE(rebuilt->AppendAndWait(e).ok());
  }
  SignedCheckpoint forged = *rebuilt->CheckpointNow();
  proof = rebuilt->ConsistencyProof(first.checkpoint.size, forged.checkpoint.size);
  ASSERT_TRUE(proof.ok());
  s = WitnessCheckpoint(forged.note, hk, second.checkpoint, *proof, *Key("tallinn"), 3).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

}  // namespace
}  // namespace uop::audit
