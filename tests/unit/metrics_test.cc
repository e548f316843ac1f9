// Prometheus text exposition.
#include "core/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace uop::core {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, RendersFamiliesWithLabelsAndEscapes) {
  Metrics m;
  m.Counter("uop_x_total", "Things", {{"peer", "tallinn"}})->Add(3);
  m.Counter("uop_x_total", "Things", {{"peer", "tallinn"}})->Add(2);
  m.Gauge("uop_lag_seconds", "Lag", {{"peer", "a\"b"}})->Set(1.5);
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("# HELP uop_x_total Things\n# TYPE uop_x_total counter\n"
                              "uop_x_total{peer=\"tallinn\"} 5\n"));
  EXPECT_THAT(text,
              HasSubstr("# TYPE uop_lag_seconds gauge\nuop_lag_seconds{peer=\"a\\\"b\"} 1.5\n"));
}

}  // namespace
}  // namespace uop::core
