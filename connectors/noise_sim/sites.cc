// Site list (coordinates from OpenStreetMap, WGS 84) and catalogue JSON.
#include "connectors/noise_sim/sites.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "connectors/sta/json_text.h"

namespace uop::noise_sim {
namespace {

const std::vector<Site>& AllSites() {
  static const auto* sites = new std::vector<Site>{
      // Helsinki
      {"helsinki", "helsinki-mannerheimintie", "Mannerheimintie at Stockmann", SiteKind::kStreet,
       60.16860, 24.94060, 68},
      {"helsinki", "helsinki-hameentie", "Hämeentie, Sörnäinen", SiteKind::kStreet, 60.18790,
       24.96060, 66},
      {"helsinki", "helsinki-lansisatama", "Länsisatama West Harbour, Terminal 2 (Tallinn ferries)",
       SiteKind::kHarbour, 60.15030, 24.91700, 58},
      {"helsinki", "helsinki-katajanokka", "Katajanokka ferry terminal", SiteKind::kHarbour,
       60.16680, 24.96250, 57},
      {"helsinki", "helsinki-kaivopuisto", "Kaivopuisto park", SiteKind::kPark, 60.15710, 24.95670,
       47},
      {"helsinki", "helsinki-keskuspuisto", "Keskuspuisto central park, Laakso", SiteKind::kPark,
       60.19720, 24.91640, 44},
      {"helsinki", "helsinki-tikkurila", "Tikkurila, runway 04R/22L approach (HEL)",
       SiteKind::kAirportApproach, 60.29250, 25.04400, 52},
      // Tallinn
      {"tallinn", "tallinn-narva-mnt", "Narva maantee at Viru väljak", SiteKind::kStreet, 59.43690,
       24.75360, 67},
      {"tallinn", "tallinn-parnu-mnt", "Pärnu maantee, Vabaduse väljak", SiteKind::kStreet,
       59.43320, 24.74450, 66},
      {"tallinn", "tallinn-vanasadam-d",
       "Vanasadam Old City Harbour, Terminal D (Helsinki ferries)", SiteKind::kHarbour, 59.44000,
       24.77300, 58},
      {"tallinn", "tallinn-vanasadam-a", "Vanasadam Old City Harbour, Terminal A",
       SiteKind::kHarbour, 59.44460, 24.76600, 57},
      {"tallinn", "tallinn-kadriorg", "Kadriorg park", SiteKind::kPark, 59.43850, 24.79200, 46},
      {"tallinn", "tallinn-ulemiste", "Ülemiste, runway 08/26 approach (TLL)",
       SiteKind::kAirportApproach, 59.42200, 24.78600, 53},
  };
  return *sites;
}

}  // namespace

absl::string_view KindName(SiteKind kind) {
  switch (kind) {
    case SiteKind::kStreet:
      return "street";
    case SiteKind::kHarbour:
      return "harbour";
    case SiteKind::kPark:
      return "park";
    case SiteKind::kAirportApproach:
      return "airport_approach";
  }
  return "unknown";
}

std::vector<Site> SitesFor(absl::string_view city) {
  std::vector<Site> out;
  for (const Site& s : AllSites()) {
    if (city == "both" || s.city == city) out.push_back(s);
  }
  return out;
}

std::string CatalogueJson(const std::vector<Site>& sites) {
  using sta::JsonString;
  std::string out = "{\"Things\":[";
  for (size_t i = 0; i < sites.size(); ++i) {
    const Site& s = sites[i];
    if (i) out += ",";
    absl::StrAppend(
        &out, "\n{\"@iot.id\":", JsonString(s.id), ",\"name\":", JsonString(s.name),
        ",\"description\":", JsonString(absl::StrCat("Noise sensor (", KindName(s.kind), ")")),
        ",\"properties\":{\"city\":", JsonString(s.city), ",\"site\":", JsonString(s.id),
        ",\"kind\":", JsonString(KindName(s.kind)), "}",
        ",\"Locations\":[{\"@iot.id\":", JsonString(s.id + "-loc"),
        ",\"name\":", JsonString(s.name),
        ",\"encodingType\":\"application/geo+json\",\"location\":",
        absl::StrFormat("{\"type\":\"Point\",\"coordinates\":[%.5f,%.5f]}", s.lon, s.lat), "}]",
        ",\"Datastreams\":[{\"@iot.id\":", JsonString(s.datastream_id()),
        ",\"name\":", JsonString(absl::StrCat("LAeq,1min ", s.name)),
        ",\"description\":\"A-weighted equivalent continuous sound level over one minute\"",
        ",\"observationType\":\"http://www.opengis.net/def/observationType/OGC-OM/2.0/"
        "OM_Measurement\"",
        ",\"unitOfMeasurement\":{\"name\":\"decibel (A-weighted)\",\"symbol\":\"dB(A)\","
        "\"definition\":\"http://qudt.org/vocab/unit/DeciB_A\"}",
        ",\"ObservedProperty\":{\"@iot.id\":\"laeq\",\"name\":\"LAeq\",\"definition\":"
        "\"https://www.iso.org/standard/45103.html\",\"description\":\"Equivalent continuous "
        "A-weighted sound pressure level (ISO 1996-1)\"}",
        ",\"Sensor\":{\"@iot.id\":\"class1-slm\",\"name\":\"Class 1 sound level meter\","
        "\"encodingType\":\"text/html\",\"metadata\":\"https://webstore.iec.ch/publication/5708\"}",
        "}]}");
  }
  out += "\n],\"FeaturesOfInterest\":[]}\n";
  return out;
}

}  // namespace uop::noise_sim
