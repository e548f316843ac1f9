// NodeAudit's memory for receipts sent again after a crash: the receiver's receipts of what it
// committed, the owner's batches without a receipt, both rebuilt from the log when it reopens.
#include "broker/node_audit.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "audit/receipt.h"
#include "gtest/gtest.h"

namespace uop::broker {
namespace {

using audit::EntryType;

constexpr char kTopic[] = "noise.observations";

audit::Entry Batch(EntryType type, const std::string& peer, int32_t partition, int64_t first,
                   int64_t last) {
  audit::Entry e;
  e.type = type;
  e.peer = peer;
  e.dataset = kTopic;
  e.topic = kTopic;
  e.partition = partition;
  e.first_offset = first;
  e.last_offset = last;
  e.record_count = static_cast<uint64_t>(last - first + 1);
  e.byte_count = 100;
  e.batch_sha256 = std::string(32, static_cast<char>('a' + first % 7));
  e.policy_version = "sha256:5be1c0de";
  return e;
}

class NodeAuditReceiptsTest : public ::testing::Test {
 protected:
  NodeAuditReceiptsTest()
      : helsinki_(*audit::Signer::Generate("helsinki")),
        tallinn_(*audit::Signer::Generate("tallinn")),
        dir_(std::filesystem::path(::testing::TempDir()) /
             ::testing::UnitTest::GetInstance()->current_test_info()->name()) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~NodeAuditReceiptsTest() override { std::filesystem::remove_all(dir_); }

  // The node `self`, with `peer`'s audit key configured.
  std::unique_ptr<NodeAudit> Open(const audit::Signer& self, const audit::Signer& peer) {
    const std::string key = (dir_ / (self.name() + ".key")).string();
    std::ofstream(key) << self.PrivateKeyPem();
    NodeConfig config;
    config.node = self.name();
    config.audit = AuditConfig{(dir_ / (self.name() + "-audit")).string(), key};
    PeerConfig p;
    p.name = peer.name();
    p.audit_vkey = peer.verifier().Vkey();
    config.peers.push_back(p);
    absl::StatusOr<std::unique_ptr<NodeAudit>> audit = NodeAudit::Open(config, &metrics_);
    EXPECT_TRUE(audit.ok()) << audit.status();
    return audit.ok() ? *std::move(audit) : nullptr;
  }

  // Tallinn's receipt of a batch it logged at `index`.
  std::string ReceiptOf(const audit::Entry& received, uint64_t index) {
    return *audit::SignReceiptFor(received, index, 1796225041000000, *tallinn_, "helsinki");
  }

  std::unique_ptr<audit::Signer> helsinki_, tallinn_;
  std::filesystem::path dir_;
  core::Metrics metrics_;
};

TEST_F(NodeAuditReceiptsTest, ReceiverResendsReceiptsOfWhatItsKafkaHoldsAlsoAfterReopening) {
  for (int round = 0; round < 2; ++round) {
    std::unique_ptr<NodeAudit> tallinn = Open(*tallinn_, *helsinki_);
    ASSERT_NE(tallinn, nullptr);
    if (round == 0) {
      ASSERT_TRUE(
          tallinn->AppendAndWait(Batch(EntryType::kBatchReceived, "helsinki", 0, 0, 9)).ok());
      ASSERT_TRUE(
          tallinn->AppendAndWait(Batch(EntryType::kBatchReceived, "helsinki", 0, 10, 19)).ok());
      ASSERT_TRUE(
          tallinn->AppendAndWait(Batch(EntryType::kBatchReceived, "helsinki", 1, 0, 4)).ok());
    }
    // Kafka holds partition 0 through offset 9 only: the second batch did not commit.
    std::vector<std::string> held = tallinn->ResendableReceipts("helsinki", kTopic, 0, 9);
    ASSERT_EQ(held.size(), 1u) << "round " << round;
    absl::StatusOr<audit::Receipt> r = audit::VerifyReceipt(held[0], tallinn_->verifier());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->origin, "helsinki");
    EXPECT_EQ(r->partition, 0);
    EXPECT_EQ(r->first_offset, 0);
    EXPECT_EQ(r->last_offset, 9);
    EXPECT_EQ(tallinn->ResendableReceipts("helsinki", kTopic, 0, 19).size(), 2u);
    EXPECT_EQ(tallinn->ResendableReceipts("helsinki", kTopic, 2, 100).size(), 0u);
    EXPECT_EQ(tallinn->ResendableReceipts("riga", kTopic, 0, 100).size(), 0u);  // no key
  }
}

TEST_F(NodeAuditReceiptsTest, OwnerLogsAResentReceiptOnceAndOnlyForABatchItSent) {
  const audit::Entry received = Batch(EntryType::kBatchReceived, "helsinki", 0, 0, 9);
  {
    std::unique_ptr<NodeAudit> helsinki = Open(*helsinki_, *tallinn_);
    ASSERT_NE(helsinki, nullptr);
    ASSERT_TRUE(helsinki->AppendAndWait(Batch(EntryType::kBatchSent, "tallinn", 0, 0, 9)).ok());
  }  // killed before the receipt arrived: reopened, it knows the batch has none
  std::unique_ptr<NodeAudit> helsinki = Open(*helsinki_, *tallinn_);
  ASSERT_NE(helsinki, nullptr);
  google::protobuf::RepeatedPtrField<std::string> receipts;
  // A receipt that names another digest, and one of a batch never sent, are not logged.
  audit::Entry other = received;
  other.batch_sha256 = std::string(32, 'z');
  receipts.Add(ReceiptOf(other, 9));
  receipts.Add(ReceiptOf(Batch(EntryType::kBatchReceived, "helsinki", 0, 10, 19), 8));
  receipts.Add(ReceiptOf(received, 7));
  EXPECT_EQ(helsinki->AcceptResentReceipts("tallinn", kTopic, receipts), 1u);
  EXPECT_EQ(helsinki->AcceptResentReceipts("tallinn", kTopic, receipts), 0u);  // logged already
  helsinki.reset();

  helsinki = Open(*helsinki_, *tallinn_);
  ASSERT_NE(helsinki, nullptr);
  EXPECT_EQ(helsinki->AcceptResentReceipts("tallinn", kTopic, receipts), 0u);
}

TEST_F(NodeAuditReceiptsTest, ReceiptHeldForTheLogIsNotLoggedAgainWhenResent) {
  const audit::Entry received = Batch(EntryType::kBatchReceived, "helsinki", 0, 0, 9);
  const audit::Entry sent = Batch(EntryType::kBatchSent, "tallinn", 0, 0, 9);
  std::unique_ptr<NodeAudit> helsinki = Open(*helsinki_, *tallinn_);
  ASSERT_NE(helsinki, nullptr);
  ASSERT_TRUE(helsinki->AppendAndWait(sent).ok());
  const std::string receipt = ReceiptOf(received, 7);
  // The receipt of the Ack, handed to the log (which may hold it until it can write).
  absl::StatusOr<audit::Entry> entry =
      audit::AcceptReceipt(receipt, tallinn_->verifier(), "helsinki", sent);
  ASSERT_TRUE(entry.ok()) << entry.status();
  absl::Notification logged;
  helsinki->AppendRetained(*entry, [&](const absl::StatusOr<audit::AppendResult>& r) {
    EXPECT_TRUE(r.ok()) << r.status();
    logged.Notify();
  });
  google::protobuf::RepeatedPtrField<std::string> receipts;
  receipts.Add(std::string(receipt));
  EXPECT_EQ(helsinki->AcceptResentReceipts("tallinn", kTopic, receipts), 0u);
  logged.WaitForNotification();
}

}  // namespace
}  // namespace uop::broker
