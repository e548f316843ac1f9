// Fetching the entity catalogue from an STA server's HTTP API (paged with @iot.nextLink).
#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connectors/sta/catalogue.h"
#include "core/status_macros.h"
#include "simdjson.h"

namespace uop::sta {
namespace {

struct Url {
  std::string origin;  // http://host:port
  std::string path;    // /FROST-Server/v1.1?...
};

absl::StatusOr<Url> SplitUrl(const std::string& url) {
  if (!absl::StartsWith(url, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("catalogue url '", url, "': only http:// is supported"));
  }
  const size_t slash = url.find('/', 7);
  if (slash == std::string::npos) return Url{url, "/"};
  return Url{url.substr(0, slash), url.substr(slash)};
}

// Appends the minified members of every page's "value" to `out` (comma separated).
absl::Status FetchAll(const std::string& first_url, int timeout_ms, std::string* out,
                      size_t* count) {
  std::string next = first_url;
  simdjson::dom::parser parser;
  for (int page = 0; !next.empty(); ++page) {
    if (page > 100000) return absl::DataLossError("more than 100000 pages: a nextLink loop?");
    ASSIGN_OR_RETURN(Url u, SplitUrl(next));
    httplib::Client client(u.origin);
    client.set_connection_timeout(0, timeout_ms * 1000);
    client.set_read_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
    auto res = client.Get(u.path.c_str());
    if (!res) {
      return absl::UnavailableError(
          absl::StrCat("GET ", next, ": ", httplib::to_string(res.error())));
    }
    if (res->status != 200) {
      return absl::UnavailableError(absl::StrCat("GET ", next, ": HTTP ", res->status));
    }
    simdjson::dom::element doc;
    if (auto err = parser.parse(res->body).get(doc); err != simdjson::SUCCESS) {
      return absl::DataLossError(
          absl::StrCat("GET ", next, ": not JSON: ", simdjson::error_message(err)));
    }
    simdjson::dom::array value;
    if (doc["value"].get_array().get(value) != simdjson::SUCCESS) {
      return absl::DataLossError(absl::StrCat("GET ", next, ": no \"value\" array"));
    }
    for (simdjson::dom::element e : value) {
      if ((*count)++ > 0) out->push_back(',');
      *out += simdjson::minify(e);
    }
    std::string_view link;
    next =
        doc["@iot.nextLink"].get_string().get(link) == simdjson::SUCCESS ? std::string(link) : "";
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EntityCatalogue> FetchCatalogue(const std::string& base_url, int timeout_ms) {
  std::string base = base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string doc = "{\"Things\":[";
  size_t things = 0, features = 0;
  RETURN_IF_ERROR(FetchAll(absl::StrCat(base, kThingsQuery), timeout_ms, &doc, &things));
  doc += "],\"FeaturesOfInterest\":[";
  RETURN_IF_ERROR(FetchAll(absl::StrCat(base, kFeaturesQuery), timeout_ms, &doc, &features));
  doc += "]}";
  return EntityCatalogue::FromJson(doc, base_url);
}

}  // namespace uop::sta
