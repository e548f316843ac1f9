// codec_bench: CPU cost of the wire format alone. Builds, serializes and parses a RecordBatch of
// 5000 SensorThings records (300 bytes of key + value + header each, with the resume token the
// owner adds), the default batch_max_records of a uopd owner.
#include <string>

#include <benchmark/benchmark.h>

#include "absl/strings/str_format.h"
#include "core/provenance.h"
#include "uop/federation/v1/federation.pb.h"

namespace {

namespace fed = uop::federation::v1;

constexpr int kRecords = 5000;

fed::OwnerMessage MakeBatch(int records) {
  fed::OwnerMessage msg;
  fed::RecordBatch* batch = msg.mutable_batch();
  batch->set_batch_seq(1);
  batch->set_partition(0);
  batch->set_policy_version("sha256:0123456789abcdef");
  batch->set_high_watermark(1 << 20);
  const std::string value(259, 'v');
  for (int i = 0; i < records; ++i) {
    fed::Record* rec = batch->add_records();
    rec->set_offset(i);
    rec->set_timestamp_ms(1'790'000'000'000 + i);
    rec->set_timestamp_type(fed::TIMESTAMP_TYPE_CREATE_TIME);
    rec->set_key(absl::StrFormat("hel-%04d-laeq", i % 600));
    rec->set_value(value);
    fed::Header* h = rec->add_headers();
    h->set_key("content-type");
    h->set_value("application/json");
    rec->set_resume_token(uop::core::EncodeOffsetToken(i + 1));
  }
  return msg;
}

// What the owner does per batch besides reading Kafka: build the message from record bytes.
void BM_BuildBatch(benchmark::State& state) {
  for (auto _ : state) {
    fed::OwnerMessage msg = MakeBatch(kRecords);
    benchmark::DoNotOptimize(msg);
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}
BENCHMARK(BM_BuildBatch)->Unit(benchmark::kMicrosecond);

void BM_SerializeBatch(benchmark::State& state) {
  const fed::OwnerMessage msg = MakeBatch(kRecords);
  std::string out;
  for (auto _ : state) {
    out.clear();
    msg.SerializeToString(&out);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(out.size()));
}
BENCHMARK(BM_SerializeBatch)->Unit(benchmark::kMicrosecond);

void BM_ParseBatch(benchmark::State& state) {
  const std::string wire = MakeBatch(kRecords).SerializeAsString();
  for (auto _ : state) {
    fed::OwnerMessage msg;
    benchmark::DoNotOptimize(msg.ParseFromString(wire));
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(wire.size()));
}
BENCHMARK(BM_ParseBatch)->Unit(benchmark::kMicrosecond);

// ByteSizeLong walks every record; the owner and the receiver each call it per batch.
void BM_ByteSizeLong(benchmark::State& state) {
  const fed::OwnerMessage msg = MakeBatch(kRecords);
  for (auto _ : state) benchmark::DoNotOptimize(msg.batch().ByteSizeLong());
  state.SetItemsProcessed(state.iterations() * kRecords);
}
BENCHMARK(BM_ByteSizeLong)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
