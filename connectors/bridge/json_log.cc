// JSON log lines; one write(2) per line so concurrent lines never interleave.
#include "connectors/bridge/json_log.h"

#include <unistd.h>

#include "absl/time/clock.h"
#include "connectors/sta/iso_time.h"
#include "connectors/sta/json_text.h"

namespace uop::sta_bridge::log {

void Write(absl::string_view level, absl::string_view event, std::initializer_list<Field> fields) {
  std::string line = "{\"ts\":";
  sta::AppendJsonString(&line, sta::FormatInstant(absl::Now()));
  line += ",\"level\":";
  sta::AppendJsonString(&line, level);
  line += ",\"event\":";
  sta::AppendJsonString(&line, event);
  for (const Field& f : fields) {
    line.push_back(',');
    sta::AppendJsonString(&line, f.first);
    line.push_back(':');
    sta::AppendJsonString(&line, f.second);
  }
  line += "}\n";
  ssize_t off = 0;
  while (off < static_cast<ssize_t>(line.size())) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) return;
    off += n;
  }
}

}  // namespace uop::sta_bridge::log
