// CheckpointExchange between two nodes, each with an in-memory log and a fake audit sink: rounds
// as the link and the gRPC service carry them, and what each side logs.
#include "broker/checkpoint_exchange.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "audit/checkpoint.h"
#include "audit/fake_audit_sink.h"
#include "audit/merkle.h"
#include "core/metrics.h"
#include "gtest/gtest.h"

namespace uop::broker {
namespace {

namespace fed = uop::federation::v1;
using audit::EntryType;

// A log of made-up leaves, signed at the sizes the test asks for.
class FakeLog final : public WitnessedLog {
 public:
  explicit FakeLog(const audit::Signer* signer) : signer_(signer) {}

  void Grow(int n, absl::string_view tag = "entry") {
    for (int i = 0; i < n; ++i) {
      leaves_.push_back(audit::LeafHash(absl::StrCat(tag, " ", leaves_.size())));
    }
    activity_ = leaves_.size() - 1;
  }
  void Sign() {
    audit::Checkpoint c;
    c.origin = signer_->name();
    c.size = leaves_.size();
    c.root = audit::RootOf(leaves_);
    c.time_seconds = 1796225041;
    latest_ = audit::SignedCheckpoint{c, audit::SignCheckpoint(c, *signer_)};
  }
  // Entries only the exchange itself caused: no new activity.
  void GrowWitnessing(int n) {
    for (int i = 0; i < n; ++i) {
      leaves_.push_back(audit::LeafHash(absl::StrCat("witnessing ", leaves_.size())));
    }
  }

  std::optional<audit::SignedCheckpoint> LatestCheckpoint() const override { return latest_; }
  absl::StatusOr<std::vector<audit::Hash>> ConsistencyProof(uint64_t old_size,
                                                            uint64_t new_size) const override {
    if (new_size > leaves_.size() || old_size > new_size) {
      return absl::OutOfRangeError(absl::StrCat("no proof from ", old_size, " to ", new_size));
    }
    return audit::ConsistencyProof(std::span<const audit::Hash>(leaves_).first(new_size), old_size);
  }
  std::optional<uint64_t> LastActivity() const override { return activity_; }

 private:
  const audit::Signer* signer_;
  std::vector<audit::Hash> leaves_;
  std::optional<uint64_t> activity_;
  std::optional<audit::SignedCheckpoint> latest_;
};

struct Node {
  explicit Node(const std::string& name) : signer(*audit::Signer::Generate(name)), log(&*signer) {}
  void Connect(Node& peer) {
    exchange = std::make_unique<CheckpointExchange>(
        &*signer, std::map<std::string, audit::Verifier>{{peer.name(), peer.signer->verifier()}},
        &sink, &log, &metrics);
  }
  std::string name() const { return signer->name(); }
  std::vector<audit::Entry> Logged(EntryType type) const {
    std::vector<audit::Entry> out;
    for (const audit::Entry& e : sink.durable()) {
      if (e.type == type) out.push_back(e);
    }
    return out;
  }
  double Refusals(const std::string& peer, const std::string& by) {
    return metrics.Counter("uop_audit_witness_refusals_total", "", {{"peer", peer}, {"by", by}})
        ->Get();
  }

  std::unique_ptr<audit::Signer> signer;
  FakeLog log;
  audit::FakeAuditSink sink{/*auto_complete=*/true};
  core::Metrics metrics;
  std::unique_ptr<CheckpointExchange> exchange;
};

class CheckpointExchangeTest : public ::testing::Test {
 protected:
  CheckpointExchangeTest() : tallinn_("tallinn"), helsinki_("helsinki") {
    tallinn_.Connect(helsinki_);
    helsinki_.Connect(tallinn_);
  }

  // One round as PeerLink::RunWitness drives it: tallinn (the receiver) calls helsinki.
  int Round() {
    fed::WitnessRequest request = tallinn_.exchange->Request("helsinki");
    int calls = 0;
    for (; calls < 3; ++calls) {
      absl::StatusOr<fed::WitnessResponse> response = helsinki_.exchange->Serve("tallinn", request);
      EXPECT_TRUE(response.ok()) << response.status();
      if (!response.ok()) break;
      absl::StatusOr<std::optional<fed::WitnessRequest>> next =
          tallinn_.exchange->OnResponse("helsinki", *response);
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok() || !next->has_value()) break;
      request = **next;
    }
    return calls + 1;
  }

  Node tallinn_, helsinki_;
};

TEST_F(CheckpointExchangeTest, OneRoundCosignsBothLogsAndEachSideLogsBothHalves) {
  tallinn_.log.Grow(5);
  tallinn_.log.Sign();
  helsinki_.log.Grow(7);
  helsinki_.log.Sign();
  EXPECT_EQ(Round(), 2);  // the answer, then tallinn's cosignature of helsinki's checkpoint

  // Helsinki cosigned tallinn's checkpoint (peer_checkpoint) and holds tallinn's cosignature of
  // its own (cosignature); tallinn the mirror image.
  for (Node* n : {&tallinn_, &helsinki_}) {
    Node& other = n == &tallinn_ ? helsinki_ : tallinn_;
    const std::vector<audit::Entry> peer_cp = n->Logged(EntryType::kPeerCheckpoint);
    const std::vector<audit::Entry> cosig = n->Logged(EntryType::kCosignature);
    ASSERT_EQ(peer_cp.size(), 1u) << n->name();
    ASSERT_EQ(cosig.size(), 1u) << n->name();
    EXPECT_EQ(peer_cp[0].peer, other.name());
    EXPECT_EQ(cosig[0].peer, other.name());
    absl::StatusOr<audit::Checkpoint> theirs =
        audit::VerifyCosigned(peer_cp[0].payload, other.signer->verifier(), n->signer->verifier());
    ASSERT_TRUE(theirs.ok()) << theirs.status();
    EXPECT_EQ(theirs->size, other.log.LatestCheckpoint()->checkpoint.size);
    absl::StatusOr<audit::Checkpoint> ours =
        audit::VerifyCosigned(cosig[0].payload, n->signer->verifier(), other.signer->verifier());
    ASSERT_TRUE(ours.ok()) << ours.status();
    EXPECT_EQ(*ours, n->log.LatestCheckpoint()->checkpoint);
    EXPECT_TRUE(n->Logged(EntryType::kWitnessRefused).empty());
  }
  EXPECT_EQ(tallinn_.exchange->CosignedBy("helsinki"), 5u);
  EXPECT_EQ(tallinn_.exchange->WitnessedOf("helsinki"), 7u);
  EXPECT_EQ(helsinki_.exchange->CosignedBy("tallinn"), 7u);
  EXPECT_EQ(helsinki_.exchange->WitnessedOf("tallinn"), 5u);
}

TEST_F(CheckpointExchangeTest, LaterRoundsProveConsistencyAndIdleLogsAreNotOfferedAgain) {
  tallinn_.log.Grow(5);
  tallinn_.log.Sign();
  helsinki_.log.Grow(7);
  helsinki_.log.Sign();
  Round();
  // The exchange's own entries and a checkpoint of them: nothing new to witness.
  tallinn_.log.GrowWitnessing(3);
  tallinn_.log.Sign();
  helsinki_.log.GrowWitnessing(3);
  helsinki_.log.Sign();
  fed::WitnessRequest idle = tallinn_.exchange->Request("helsinki");
  EXPECT_FALSE(idle.has_offer());
  absl::StatusOr<fed::WitnessResponse> answer = helsinki_.exchange->Serve("tallinn", idle);
  ASSERT_TRUE(answer.ok());
  EXPECT_FALSE(answer->has_offer());
  EXPECT_EQ(helsinki_.sink.durable().size(), 2u);

  tallinn_.log.Grow(20);
  tallinn_.log.Sign();
  helsinki_.log.Grow(9);
  helsinki_.log.Sign();
  fed::WitnessRequest request = tallinn_.exchange->Request("helsinki");
  ASSERT_TRUE(request.has_offer());
  EXPECT_EQ(request.offer().old_size(), 5u);
  EXPECT_FALSE(request.offer().consistency_proof().empty());
  Round();
  EXPECT_EQ(helsinki_.exchange->WitnessedOf("tallinn"), 28u);
  EXPECT_EQ(tallinn_.exchange->WitnessedOf("helsinki"), 19u);
  EXPECT_EQ(helsinki_.Logged(EntryType::kPeerCheckpoint).size(), 2u);
  EXPECT_EQ(tallinn_.Logged(EntryType::kCosignature).size(), 2u);
  EXPECT_EQ(tallinn_.Refusals("helsinki", "us") + helsinki_.Refusals("tallinn", "us"), 0);
}

TEST_F(CheckpointExchangeTest, RewrittenLogReSignedWithTheRealKeyIsRefusedByTheWitness) {
  tallinn_.log.Grow(10);
  tallinn_.log.Sign();
  Round();
  ASSERT_EQ(helsinki_.exchange->WitnessedOf("tallinn"), 10u);

  // Tallinn's operator rewrites the log from scratch, longer, and signs it with tallinn's real
  // key; tallinn restarts with no memory of what helsinki cosigned.
  Node rewritten("tallinn");
  rewritten.signer = std::move(tallinn_.signer);
  rewritten.log = FakeLog(&*rewritten.signer);
  rewritten.log.Grow(14, "forged");
  rewritten.log.Sign();
  rewritten.Connect(helsinki_);

  fed::WitnessRequest request = rewritten.exchange->Request("helsinki");
  ASSERT_TRUE(request.has_offer());
  EXPECT_EQ(request.offer().old_size(), 0u);
  absl::StatusOr<fed::WitnessResponse> conflict = helsinki_.exchange->Serve("tallinn", request);
  ASSERT_TRUE(conflict.ok());
  EXPECT_EQ(conflict->conflict_size(), 10u);  // offer again, proved from what I cosigned
  EXPECT_TRUE(conflict->cosigned().empty());
  absl::StatusOr<std::optional<fed::WitnessRequest>> again =
      rewritten.exchange->OnResponse("helsinki", *conflict);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->offer().old_size(), 10u);
  absl::StatusOr<fed::WitnessResponse> refused = helsinki_.exchange->Serve("tallinn", **again);
  ASSERT_TRUE(refused.ok());
  EXPECT_TRUE(refused->cosigned().empty());
  EXPECT_EQ(refused->refusal().rfind("tallinn's checkpoint: tallinn's checkpoint of 14 entries "
                                     "does not extend the one of 10 we cosigned: ",
                                     0),
            0u)
      << refused->refusal();
  // The witness keeps its copy and logs the refusal with the offered checkpoint as evidence.
  EXPECT_EQ(helsinki_.exchange->WitnessedOf("tallinn"), 10u);
  const std::vector<audit::Entry> ours = helsinki_.Logged(EntryType::kWitnessRefused);
  ASSERT_EQ(ours.size(), 1u);
  EXPECT_EQ(ours[0].peer, "tallinn");
  EXPECT_EQ(ours[0].reason, refused->refusal());
  EXPECT_EQ(ours[0].payload, rewritten.log.LatestCheckpoint()->note);
  EXPECT_EQ(helsinki_.Refusals("tallinn", "us"), 1);
  EXPECT_EQ(helsinki_.metrics.Gauge("uop_audit_witness_ok", "", {{"peer", "tallinn"}})->Get(), 0);

  // The log's owner hears it and logs it too.
  ASSERT_TRUE(rewritten.exchange->OnResponse("helsinki", *refused).ok());
  const std::vector<audit::Entry> theirs = rewritten.Logged(EntryType::kWitnessRefused);
  ASSERT_EQ(theirs.size(), 1u);
  EXPECT_EQ(theirs[0].reason, "helsinki refused to cosign our checkpoint: " + refused->refusal());
  EXPECT_EQ(rewritten.Refusals("helsinki", "peer"), 1);
}

TEST_F(CheckpointExchangeTest, ShorterLogAfterCosignIsRefusedAsShrunk) {
  tallinn_.log.Grow(10);
  tallinn_.log.Sign();
  Round();
  Node truncated("tallinn");
  truncated.signer = std::move(tallinn_.signer);
  truncated.log = FakeLog(&*truncated.signer);
  truncated.log.Grow(4, "forged");
  truncated.log.Sign();
  truncated.Connect(helsinki_);
  absl::StatusOr<fed::WitnessResponse> conflict =
      helsinki_.exchange->Serve("tallinn", truncated.exchange->Request("helsinki"));
  ASSERT_TRUE(conflict.ok());
  absl::StatusOr<std::optional<fed::WitnessRequest>> again =
      truncated.exchange->OnResponse("helsinki", *conflict);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_TRUE((*again)->offer().consistency_proof().empty());  // none can exist
  absl::StatusOr<fed::WitnessResponse> refused = helsinki_.exchange->Serve("tallinn", **again);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->refusal(), "tallinn's checkpoint: tallinn's log shrank from 10 to 4 entries");
}

TEST_F(CheckpointExchangeTest, WitnessRemembersAcrossRestartFromItsOwnLog) {
  tallinn_.log.Grow(10);
  tallinn_.log.Sign();
  Round();
  // Helsinki restarts: a new exchange restored from the entries its log holds.
  core::Metrics metrics;
  CheckpointExchange restarted(&*helsinki_.signer, {{"tallinn", tallinn_.signer->verifier()}},
                               &helsinki_.sink, &helsinki_.log, &metrics);
  for (const audit::Entry& e : helsinki_.sink.durable()) restarted.Restore(e);
  EXPECT_EQ(restarted.WitnessedOf("tallinn"), 10u);
  EXPECT_EQ(restarted.CosignedBy("tallinn"), 0u);  // helsinki had no checkpoint to offer
  // A checkpoint of another history of tallinn's first 10 entries is refused, not cosigned.
  FakeLog other(&*tallinn_.signer);
  other.Grow(10, "forged");
  other.Sign();
  fed::WitnessRequest request;
  request.mutable_offer()->set_old_size(10);
  request.mutable_offer()->set_checkpoint(other.LatestCheckpoint()->note);
  absl::StatusOr<fed::WitnessResponse> r = restarted.Serve("tallinn", request);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->cosigned().empty());
  EXPECT_NE(r->refusal().find("does not extend the one of 10 we cosigned"), std::string::npos)
      << r->refusal();
}

TEST_F(CheckpointExchangeTest, BadSignatureAndMalformedProofAreRefusedWithWhy) {
  std::unique_ptr<audit::Signer> impostor = *audit::Signer::Generate("tallinn");
  FakeLog forged(&*impostor);
  forged.Grow(3);
  forged.Sign();
  fed::WitnessRequest request;
  request.mutable_offer()->set_checkpoint(forged.LatestCheckpoint()->note);
  absl::StatusOr<fed::WitnessResponse> r = helsinki_.exchange->Serve("tallinn", request);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->cosigned().empty());
  EXPECT_EQ(r->refusal().rfind("tallinn's checkpoint: ", 0), 0u) << r->refusal();
  EXPECT_NE(r->refusal().find("tallinn"), std::string::npos);

  request.mutable_offer()->add_consistency_proof(std::string(31, 'x'));
  r = helsinki_.exchange->Serve("tallinn", request);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->refusal(), "tallinn's consistency proof hash 0 has 31 bytes, not 32");
  EXPECT_EQ(helsinki_.Refusals("tallinn", "us"), 2);
  EXPECT_EQ(helsinki_.Logged(EntryType::kWitnessRefused).size(), 2u);
  EXPECT_TRUE(helsinki_.Logged(EntryType::kPeerCheckpoint).empty());
}

TEST_F(CheckpointExchangeTest, CosignatureOfACheckpointWeDidNotOfferIsNotLogged) {
  helsinki_.log.Grow(4);
  helsinki_.log.Sign();
  const std::string note = helsinki_.log.LatestCheckpoint()->note;
  fed::WitnessRequest request;
  request.set_cosigned(*audit::Cosign(note, *tallinn_.signer, 1796225041));
  ASSERT_TRUE(helsinki_.exchange->Serve("tallinn", request).ok());
  EXPECT_TRUE(helsinki_.Logged(EntryType::kCosignature).empty());
  EXPECT_EQ(helsinki_.Refusals("tallinn", "us"), 1);
}

}  // namespace
}  // namespace uop::broker
