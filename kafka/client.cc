// librdkafka plumbing: configuration, the embedded mock cluster and topic administration.
#include "kafka/client.h"

#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log.h"

namespace uop::kafka {

absl::StatusOr<rd_kafka_conf_t*> MakeConf(const Properties& props) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [key, value] : props) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(absl::StrCat("kafka property '", key, "': ", err));
    }
  }
  return conf;
}

MockCluster::~MockCluster() {
  if (cluster != nullptr) rd_kafka_mock_cluster_destroy(cluster);
}

absl::StatusOr<std::unique_ptr<MockCluster>> StartMockCluster(int brokers) {
  auto mock = std::make_unique<MockCluster>();
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The host handle never connects anywhere; silence its "no bootstrap.servers" warning.
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  mock->host.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err));
  if (!mock->host) return absl::InternalError(absl::StrCat("mock cluster host: ", err));
  mock->cluster = rd_kafka_mock_cluster_new(mock->host.get(), brokers);
  if (mock->cluster == nullptr) return absl::InternalError("cannot start the mock Kafka cluster");
  mock->bootstrap = rd_kafka_mock_cluster_bootstraps(mock->cluster);
  return mock;
}

absl::Status CreateMockTopic(MockCluster& mock, const std::string& topic, int partitions) {
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mock.cluster, topic.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return absl::InternalError(absl::StrCat("create topic ", topic, ": ", rd_kafka_err2str(err)));
  }
  return absl::OkStatus();
}

Env::~Env() {
  admin_.reset();
  if (mock_ != nullptr) rd_kafka_mock_cluster_destroy(mock_);
  mock_host_.reset();
}

absl::StatusOr<std::unique_ptr<Env>> Env::Start(const ClusterConfig& config) {
  auto env = std::unique_ptr<Env>(new Env());
  env->properties_ = config.properties;
  if (config.embedded.has_value()) {
    auto mock = StartMockCluster(config.embedded->brokers);
    if (!mock.ok()) return mock.status();
    env->mock_host_ = std::move((*mock)->host);
    env->mock_ = (*mock)->cluster;
    (*mock)->cluster = nullptr;
    env->bootstrap_ = (*mock)->bootstrap;
    for (const auto& [topic, partitions] : config.embedded->topics) {
      rd_kafka_resp_err_t err =
          rd_kafka_mock_topic_create(env->mock_, topic.c_str(), partitions, 1);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return absl::InternalError(
            absl::StrCat("embedded kafka: create topic ", topic, ": ", rd_kafka_err2str(err)));
      }
    }
  } else {
    env->bootstrap_ = config.bootstrap;
  }
  // A metadata lookup must never create a topic (brokers with auto.create.topics.enable).
  auto admin = env->NewClient(RD_KAFKA_PRODUCER, {{"allow.auto.create.topics", "false"}});
  if (!admin.ok()) return admin.status();
  env->admin_ = *std::move(admin);
  return env;
}

absl::StatusOr<Handle> Env::NewClient(
    rd_kafka_type_t type, const Properties& overrides,
    const std::function<void(rd_kafka_conf_t*)>& customize) const {
  Properties props = properties_;
  props["bootstrap.servers"] = bootstrap_;
  for (const auto& [k, v] : overrides) props[k] = v;
  auto conf = MakeConf(props);
  if (!conf.ok()) return conf.status();
  // librdkafka's own messages become JSON log lines like ours.
  rd_kafka_conf_set_log_cb(
      *conf, [](const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
        const log::Level our = level <= 3   ? log::Level::kError
                               : level == 4 ? log::Level::kWarn
                               : level <= 6 ? log::Level::kInfo
                                            : log::Level::kDebug;
        log::Write(our, "librdkafka",
                   {{"client", rd_kafka_name(rk)}, {"facility", fac}, {"message", buf}});
      });
  if (customize) customize(*conf);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, *conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InvalidArgumentError(absl::StrCat("kafka client: ", err));
  }
  return Handle(rk);
}

bool Env::Reachable(int timeout_ms) const {
  const struct rd_kafka_metadata* md = nullptr;
  // all_topics=0 and no topic: only brokers are asked for, nothing is created.
  if (rd_kafka_metadata(admin_.get(), 0, nullptr, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return false;
  }
  const bool any = md->broker_cnt > 0;
  rd_kafka_metadata_destroy(md);
  return any;
}

absl::StatusOr<int> Env::PartitionCount(const std::string& topic) const {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(admin_.get(), topic.c_str(), nullptr);
  const struct rd_kafka_metadata* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(admin_.get(), 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("kafka metadata for ", topic, " at ", bootstrap_,
                                               ": ", rd_kafka_err2str(err)));
  }
  absl::StatusOr<int> result = absl::NotFoundError(absl::StrCat("topic ", topic, " not found"));
  if (md->topic_cnt == 1) {
    const struct rd_kafka_metadata_topic& t = md->topics[0];
    if (t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) {
      result = t.partition_cnt;
    } else if (t.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
               t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      result = absl::UnavailableError(
          absl::StrCat("kafka metadata for ", topic, ": ", rd_kafka_err2str(t.err)));
    }
  }
  rd_kafka_metadata_destroy(md);
  return result;
}

absl::StatusOr<std::map<std::string, int>> Env::AllPartitionCounts() const {
  const struct rd_kafka_metadata* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(admin_.get(), /*all_topics=*/1, nullptr, &md, 10000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("kafka metadata at ", bootstrap_, ": ", rd_kafka_err2str(err)));
  }
  std::map<std::string, int> counts;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const struct rd_kafka_metadata_topic& t = md->topics[i];
    if (t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) {
      counts[t.topic] = t.partition_cnt;
    }
  }
  rd_kafka_metadata_destroy(md);
  return counts;
}

absl::Status Env::SetTopicRetention(const std::string& topic, std::optional<int64_t> retention_ms) {
  if (mock_ != nullptr) {
    return absl::UnimplementedError(
        "embedded Kafka (librdkafka's mock cluster) keeps no topic configs");
  }
  char err[512];
  rd_kafka_ConfigResource_t* resource =
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  if (retention_ms.has_value()) {
    const std::string value = std::to_string(*retention_ms);
    if (rd_kafka_resp_err_t e =
            rd_kafka_ConfigResource_set_config(resource, "retention.ms", value.c_str());
        e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_ConfigResource_destroy(resource);
      return absl::InvalidArgumentError(
          absl::StrCat("retention.ms for ", topic, ": ", rd_kafka_err2str(e)));
    }
  }
  rd_kafka_AdminOptions_t* options =
      rd_kafka_AdminOptions_new(admin_.get(), RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
  rd_kafka_AdminOptions_set_request_timeout(options, 5000, err, sizeof err);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin_.get());
  rd_kafka_AlterConfigs(admin_.get(), &resource, 1, options, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 6000);
  absl::Status status;
  if (ev == nullptr) {
    status = absl::DeadlineExceededError(
        absl::StrCat("AlterConfigs of ", topic, ": no answer within 6 s"));
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    status = absl::UnavailableError(
        absl::StrCat("AlterConfigs of ", topic, ": ", rd_kafka_event_error_string(ev)));
  } else {
    size_t n = 0;
    const rd_kafka_ConfigResource_t** results =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      if (rd_kafka_ConfigResource_error(results[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* msg = rd_kafka_ConfigResource_error_string(results[i]);
        status = absl::UnavailableError(absl::StrCat(
            "AlterConfigs of ", topic, ": ",
            msg != nullptr ? msg : rd_kafka_err2str(rd_kafka_ConfigResource_error(results[i]))));
      }
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_ConfigResource_destroy(resource);
  return status;
}

std::map<std::string, absl::Status> Env::EnsureTopics(const std::map<std::string, int>& topics) {
  std::map<std::string, absl::Status> result;
  std::map<std::string, int> wanted;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [topic, partitions] : topics) {
      if (ensured_.contains(topic)) {
        result[topic] = absl::OkStatus();
      } else {
        wanted[topic] = partitions;
      }
    }
  }
  if (wanted.empty()) return result;
  auto judge = [&](const std::map<std::string, int>& counts, bool final) {
    for (auto it = wanted.begin(); it != wanted.end();) {
      auto found = counts.find(it->first);
      if (found == counts.end()) {
        if (final) {
          result[it->first] = absl::NotFoundError(
              absl::StrCat("topic ", it->first, " does not show in the cluster's metadata"));
        }
        ++it;
        continue;
      }
      if (found->second != it->second) {
        result[it->first] = absl::FailedPreconditionError(
            absl::StrCat("topic ", it->first, " has ", found->second,
                         " partitions but its origin has ", it->second));
      } else {
        result[it->first] = absl::OkStatus();
        absl::MutexLock lock(&mu_);
        ensured_.insert(it->first);
      }
      it = wanted.erase(it);
    }
  };
  absl::StatusOr<std::map<std::string, int>> counts = AllPartitionCounts();
  if (!counts.ok()) {
    for (const auto& [topic, partitions] : wanted) result[topic] = counts.status();
    return result;
  }
  judge(*counts, false);
  if (wanted.empty()) return result;
  if (mock_ != nullptr) {
    for (const auto& [topic, partitions] : wanted) {
      rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mock_, topic.c_str(), partitions, 1);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        result[topic] =
            absl::InternalError(absl::StrCat("create topic ", topic, ": ", rd_kafka_err2str(err)));
      }
    }
  } else {
    char err[512];
    std::vector<rd_kafka_NewTopic_t*> news;
    for (const auto& [topic, partitions] : wanted) {
      rd_kafka_NewTopic_t* nt =
          rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, err, sizeof err);
      if (nt == nullptr) {
        result[topic] = absl::InvalidArgumentError(absl::StrCat("topic ", topic, ": ", err));
      } else {
        news.push_back(nt);
      }
    }
    rd_kafka_AdminOptions_t* options =
        rd_kafka_AdminOptions_new(admin_.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(options, 10000, err, sizeof err);
    rd_kafka_AdminOptions_set_operation_timeout(options, 10000, err, sizeof err);
    rd_kafka_queue_t* queue = rd_kafka_queue_new(admin_.get());
    rd_kafka_CreateTopics(admin_.get(), news.data(), news.size(), options, queue);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 15000);
    if (ev == nullptr) {
      // librdkafka's mock cluster (uopctl dev-kafka) does not implement CreateTopics.
      log::Warn("kafka_create_topics_unanswered", {{"topics", std::to_string(news.size())}});
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
      for (size_t i = 0; i < n; ++i) {
        const std::string name = rd_kafka_topic_result_name(results[i]);
        const rd_kafka_resp_err_t code = rd_kafka_topic_result_error(results[i]);
        if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
          log::Info("kafka_topic_created",
                    {{"topic", name}, {"partitions", std::to_string(wanted[name])}});
        } else if (code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS &&
                   code != RD_KAFKA_RESP_ERR__TIMED_OUT) {
          const char* msg = rd_kafka_topic_result_error_string(results[i]);
          result[name] = absl::UnavailableError(
              absl::StrCat("create topic ", name, " with ", wanted[name],
                           " partitions: ", msg != nullptr ? msg : rd_kafka_err2str(code)));
        }
      }
      rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    for (rd_kafka_NewTopic_t* nt : news) rd_kafka_NewTopic_destroy(nt);
  }
  for (const auto& [topic, status] : result) wanted.erase(topic);
  // Metadata lags topic creation a little on real brokers: wait for it, with a deadline.
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (!wanted.empty()) {
    counts = AllPartitionCounts();
    const bool final = absl::Now() >= deadline;
    if (counts.ok()) judge(*counts, final);
    if (final) {
      for (const auto& [topic, partitions] : wanted) {
        if (!result.contains(topic)) {
          result[topic] =
              counts.ok()
                  ? absl::NotFoundError(absl::StrCat("topic ", topic, " did not show within 15 s"))
                  : counts.status();
        }
      }
      break;
    }
    if (!wanted.empty()) absl::SleepFor(absl::Milliseconds(200));  // metadata poll interval
  }
  return result;
}

absl::Status Env::EnsureTopic(const std::string& topic, int partitions) {
  {
    absl::MutexLock lock(&mu_);
    if (ensured_.contains(topic)) return absl::OkStatus();
  }
  if (mock_ != nullptr) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mock_, topic.c_str(), partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      return absl::InternalError(absl::StrCat("create topic ", topic, ": ", rd_kafka_err2str(err)));
    }
  } else {
    char err[512];
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, err, sizeof err);
    if (nt == nullptr) return absl::InvalidArgumentError(absl::StrCat("topic ", topic, ": ", err));
    rd_kafka_AdminOptions_t* options =
        rd_kafka_AdminOptions_new(admin_.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(options, 3000, err, sizeof err);
    rd_kafka_AdminOptions_set_operation_timeout(options, 3000, err, sizeof err);
    rd_kafka_queue_t* queue = rd_kafka_queue_new(admin_.get());
    rd_kafka_CreateTopics(admin_.get(), &nt, 1, options, queue);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 5000);
    if (ev == nullptr) {
      // librdkafka's mock cluster (uopctl dev-kafka) does not implement CreateTopics.
      log::Warn("kafka_create_topics_unanswered", {{"topic", topic}});
    } else {
      size_t n = 0;
      const rd_kafka_topic_result_t** results =
          rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
      rd_kafka_resp_err_t code =
          n == 1 ? rd_kafka_topic_result_error(results[0]) : rd_kafka_event_error(ev);
      if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::Info("kafka_topic_created",
                  {{"topic", topic}, {"partitions", std::to_string(partitions)}});
      } else if (code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS &&
                 code != RD_KAFKA_RESP_ERR__TIMED_OUT) {
        std::string msg = n == 1 && rd_kafka_topic_result_error_string(results[0]) != nullptr
                              ? rd_kafka_topic_result_error_string(results[0])
                              : rd_kafka_err2str(code);
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(queue);
        rd_kafka_AdminOptions_destroy(options);
        rd_kafka_NewTopic_destroy(nt);
        return absl::UnavailableError(
            absl::StrCat("create topic ", topic, " with ", partitions, " partitions: ", msg));
      }
      rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_NewTopic_destroy(nt);
  }
  // Metadata lags topic creation a little on real brokers: wait for it, with a deadline.
  absl::StatusOr<int> count = PartitionCount(topic);
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::IsNotFound(count.status()) && absl::Now() < deadline; count = PartitionCount(topic)) {
    absl::SleepFor(absl::Milliseconds(100));  // poll interval while the broker propagates
  }
  if (!count.ok()) return count.status();
  if (*count != partitions) {
    return absl::FailedPreconditionError(
        absl::StrCat("topic ", topic, " has ", *count, " partitions but its origin has ",
                     partitions, "; recreate it with ", partitions, " partitions"));
  }
  absl::MutexLock lock(&mu_);
  ensured_.insert(topic);
  return absl::OkStatus();
}

}  // namespace uop::kafka
