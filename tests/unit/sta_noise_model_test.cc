// The simulator's model: deterministic per seed, and shaped like city noise.
#include "connectors/noise_sim/noise_model.h"

#include <gtest/gtest.h>

#include "connectors/sta/catalogue.h"

namespace uop::noise_sim {
namespace {

absl::Time Local(int y, int mo, int d, int h, int mi) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone("Europe/Helsinki", &tz));
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), tz);
}

const Site& SiteNamed(const std::string& id) {
  static const std::vector<Site> sites = SitesFor("both");
  for (const Site& s : sites) {
    if (s.id == id) return s;
  }
  ADD_FAILURE() << id;
  return sites[0];
}

double MeanOverHour(const NoiseModel& m, absl::Time from) {
  double sum = 0;
  for (int i = 0; i < 60; ++i) sum += m.LaeqAt(from + absl::Minutes(i));
  return sum / 60;
}

TEST(NoiseModelTest, DeterministicPerSeed) {
  const Site& s = SiteNamed("helsinki-mannerheimintie");
  NoiseModel a(7, s), b(7, s), c(8, s);
  const absl::Time t = Local(2026, 12, 2, 8, 15);
  EXPECT_EQ(a.LaeqAt(t), b.LaeqAt(t));
  int differ = 0;
  for (int i = 0; i < 60; ++i)
    differ += a.LaeqAt(t + absl::Minutes(i)) != c.LaeqAt(t + absl::Minutes(i));
  EXPECT_GT(differ, 30);
}

TEST(NoiseModelTest, StreetRushHourLouderThanNightAndWeekdayThanSunday) {
  NoiseModel m(1, SiteNamed("tallinn-narva-mnt"));
  // Wednesday 2 December 2026 and Sunday 6 December 2026, local time.
  const double rush = MeanOverHour(m, Local(2026, 12, 2, 8, 0));
  const double night = MeanOverHour(m, Local(2026, 12, 2, 3, 0));
  const double sunday_morning = MeanOverHour(m, Local(2026, 12, 6, 8, 0));
  EXPECT_GT(rush - night, 6.0);
  EXPECT_GT(rush - sunday_morning, 3.0);
  EXPECT_GT(rush, 60.0);
  EXPECT_LT(rush, 75.0);
}

TEST(NoiseModelTest, FerryBerthingRaisesHarbourLevel) {
  NoiseModel m(1, SiteNamed("helsinki-lansisatama"));
  // A 10:30 departure on a workday against 14:45, 45 minutes from any ferry.
  EXPECT_EQ(MinutesToFerry(14.75, 2), 45.0);
  EXPECT_GT(m.LaeqAt(Local(2026, 12, 2, 10, 30)) - m.LaeqAt(Local(2026, 12, 2, 14, 45)), 6.0);
  EXPECT_EQ(MinutesToFerry(10.5, 2), 0.0);
}

TEST(NoiseModelTest, CatalogueLoadsInTheBridge) {
  auto c = sta::EntityCatalogue::FromJson(CatalogueJson(SitesFor("both")), "sim");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->datastream_count(), 13u);
  const sta::DatastreamInfo* ds =
      c->FindDatastream(sta::EntityId{"tallinn-vanasadam-d-laeq", false});
  ASSERT_NE(ds, nullptr);
  EXPECT_EQ(ds->unit_symbol, "dB(A)");
  EXPECT_EQ(ds->location_geojson, R"({"type":"Point","coordinates":[24.773,59.44]})");
  EXPECT_EQ(ds->thing_name, "Vanasadam Old City Harbour, Terminal D (Helsinki ferries)");
}

}  // namespace
}  // namespace uop::noise_sim
