#include "observability/logging.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::observability {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// "2026-11-23T10:00:00.123Z": 'D' in the shape is any digit, everything else is literal. (No
// std::regex: GCC 12 warns inside it under the sanitizer build, which uses -Werror.)
bool is_timestamp(std::string_view s) {
  constexpr std::string_view kShape = "DDDD-DD-DDTDD:DD:DD.DDDZ";
  if (s.size() != kShape.size()) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool ok = kShape[i] == 'D' ? (s[i] >= '0' && s[i] <= '9') : s[i] == kShape[i];
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

// Logging is asynchronous (flush() only queues a flush), so wait until `n` lines are on disk.
// Returns early as soon as they are; the deadline only bounds a failing test.
std::vector<std::string> wait_for_lines(const fs::path& path, std::size_t n) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto lines = read_lines(path);
  while (lines.size() < n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    lines = read_lines(path);
  }
  return lines;
}

class LogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "gatehouse-logs-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  config::LogConfig files(std::string level = "info") const {
    config::LogConfig cfg;
    cfg.access = (dir_ / "access.log").string();
    cfg.error = (dir_ / "error.log").string();
    cfg.security = (dir_ / "security.log").string();
    cfg.level = std::move(level);
    return cfg;
  }

  fs::path dir_;
};

TEST_F(LogsTest, LinesAppearInTheirFilesAfterFlush) {
  Logs logs(files());
  EXPECT_TRUE(logs.access_enabled());
  logs.access(R"({"type":"access","n":1})");
  logs.access(R"({"type":"access","n":2})");
  logs.security(R"({"type":"security","event":"malformed_request"})");
  logs.error(spdlog::level::warn, "upstream connect failed");
  logs.flush();

  EXPECT_EQ(wait_for_lines(dir_ / "access.log", 2),
            (std::vector<std::string>{R"({"type":"access","n":1})", R"({"type":"access","n":2})"}));
  EXPECT_EQ(wait_for_lines(dir_ / "security.log", 1),
            std::vector<std::string>{R"({"type":"security","event":"malformed_request"})"});
  EXPECT_EQ(wait_for_lines(dir_ / "error.log", 1).size(), 1u);
  EXPECT_EQ(logs.dropped(), 0u);
}

TEST_F(LogsTest, FilesAreAppendedNotTruncated) {
  { std::ofstream(dir_ / "access.log") << "existing line\n"; }
  Logs logs(files());
  logs.access("new line");
  logs.flush();
  EXPECT_EQ(wait_for_lines(dir_ / "access.log", 2),
            (std::vector<std::string>{"existing line", "new line"}));
}

TEST_F(LogsTest, ErrorLineJsonShape) {
  Logs logs(files());
  logs.error(spdlog::level::warn, "upstream \"connect\" failed",
             R"("request_id":"r1","upstream":"127.0.0.1:8000")");
  logs.flush();
  auto lines = wait_for_lines(dir_ / "error.log", 1);
  ASSERT_EQ(lines.size(), 1u);
  const auto& line = lines[0];

  const std::string prefix = R"({"time":")";
  const std::string suffix =
      R"(","type":"error","level":"warn","message":"upstream \"connect\" failed",)"
      R"("request_id":"r1","upstream":"127.0.0.1:8000"})";
  ASSERT_EQ(line.size(), prefix.size() + 24 + suffix.size()) << line;
  EXPECT_EQ(line.substr(0, prefix.size()), prefix);
  EXPECT_EQ(line.substr(prefix.size() + 24), suffix);

  auto j = json::parse(line);
  EXPECT_TRUE(is_timestamp(j["time"].get<std::string>())) << line;
  EXPECT_EQ(j["type"], "error");
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["message"], "upstream \"connect\" failed");
  EXPECT_EQ(j["request_id"], "r1");
  EXPECT_EQ(j["upstream"], "127.0.0.1:8000");
  EXPECT_EQ(j.size(), 6u);
}

TEST_F(LogsTest, ErrorLevelNames) {
  Logs logs(files("trace"));
  logs.error(spdlog::level::trace, "t");
  logs.error(spdlog::level::debug, "d");
  logs.error(spdlog::level::info, "i");
  logs.error(spdlog::level::warn, "w");
  logs.error(spdlog::level::err, "e");
  logs.error(spdlog::level::critical, "c");
  logs.flush();
  auto lines = wait_for_lines(dir_ / "error.log", 6);
  ASSERT_EQ(lines.size(), 6u);
  std::vector<std::string> levels;
  for (const auto& l : lines) {
    auto j = json::parse(l);
    EXPECT_EQ(j.size(), 4u) << l;  // no extra fields
    levels.push_back(j["level"].get<std::string>());
  }
  // The names config accepts for log.level.
  EXPECT_EQ(levels,
            (std::vector<std::string>{"trace", "debug", "info", "warn", "error", "critical"}));
}

TEST_F(LogsTest, WarnLevelDropsInfo) {
  Logs logs(files("warn"));
  EXPECT_FALSE(logs.should_log(spdlog::level::debug));
  EXPECT_FALSE(logs.should_log(spdlog::level::info));
  EXPECT_TRUE(logs.should_log(spdlog::level::warn));
  EXPECT_TRUE(logs.should_log(spdlog::level::err));
  logs.error(spdlog::level::info, "dropped");
  logs.error(spdlog::level::err, "kept");
  logs.flush();
  // Lines are written in order, so once "kept" is there "dropped" would be too.
  auto lines = wait_for_lines(dir_ / "error.log", 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["message"], "kept");
}

TEST_F(LogsTest, LevelOffLogsNothing) {
  Logs logs(files("off"));
  EXPECT_FALSE(logs.should_log(spdlog::level::critical));
  EXPECT_FALSE(logs.should_log(spdlog::level::err));
}

TEST_F(LogsTest, AccessAndSecurityIgnoreLevel) {
  Logs logs(files("error"));
  logs.access("a");
  logs.security("s");
  logs.flush();
  EXPECT_EQ(wait_for_lines(dir_ / "access.log", 1), std::vector<std::string>{"a"});
  EXPECT_EQ(wait_for_lines(dir_ / "security.log", 1), std::vector<std::string>{"s"});
}

TEST_F(LogsTest, OffDestinations) {
  auto cfg = files();
  cfg.access = "off";
  cfg.error = "off";
  Logs logs(cfg);
  EXPECT_FALSE(logs.access_enabled());
  EXPECT_FALSE(logs.should_log(spdlog::level::critical));
  logs.access("ignored");
  logs.error(spdlog::level::critical, "ignored");
  logs.security("kept");
  logs.flush();
  EXPECT_EQ(wait_for_lines(dir_ / "security.log", 1), std::vector<std::string>{"kept"});
  EXPECT_FALSE(fs::exists(dir_ / "access.log"));
  EXPECT_FALSE(fs::exists(dir_ / "error.log"));
}

TEST_F(LogsTest, ReopenAfterRenameWritesToANewFile) {
  Logs logs(files());
  logs.access("before");
  logs.flush();
  ASSERT_EQ(wait_for_lines(dir_ / "access.log", 1), std::vector<std::string>{"before"});

  fs::rename(dir_ / "access.log", dir_ / "access.log.1");
  logs.reopen();
  logs.access("after");
  logs.flush();

  EXPECT_EQ(wait_for_lines(dir_ / "access.log", 1), std::vector<std::string>{"after"});
  EXPECT_EQ(read_lines(dir_ / "access.log.1"), std::vector<std::string>{"before"});
}

TEST_F(LogsTest, WithoutReopenRenamedFileKeepsGrowing) {
  Logs logs(files());
  logs.access("one");
  logs.flush();
  ASSERT_EQ(wait_for_lines(dir_ / "access.log", 1).size(), 1u);
  fs::rename(dir_ / "access.log", dir_ / "access.log.1");
  logs.access("two");
  logs.flush();
  EXPECT_EQ(wait_for_lines(dir_ / "access.log.1", 2), (std::vector<std::string>{"one", "two"}));
  EXPECT_FALSE(fs::exists(dir_ / "access.log"));
}

TEST_F(LogsTest, DestructorWritesPendingLines) {
  {
    Logs logs(files());
    for (int i = 0; i < 100; ++i) {
      logs.access("line " + std::to_string(i));
    }
  }
  auto lines = read_lines(dir_ / "access.log");
  ASSERT_EQ(lines.size(), 100u);
  EXPECT_EQ(lines.front(), "line 0");
  EXPECT_EQ(lines.back(), "line 99");
}

TEST_F(LogsTest, UnopenableFileThrowsNamingTheStream) {
  { std::ofstream(dir_ / "plain-file") << "x"; }
  auto cfg = files();
  cfg.security = (dir_ / "plain-file" / "sub" / "security.log").string();
  try {
    Logs logs(cfg);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_EQ(what.rfind("log.security: cannot open " + cfg.security + ": ", 0), 0u) << what;
  }
}

// --- ClientIpHasher ---------------------------------------------------------------------------

TEST_F(LogsTest, InternalErrorLineAndCounter) {
  Logs logs(files());
  EXPECT_EQ(logs.internal_errors(), 0u);
  logs.internal_error("session", "vector::_M_range_check", "rid-1");
  logs.internal_error("sweeper", "boom");
  logs.flush();
  EXPECT_EQ(logs.internal_errors(), 2u);
  auto lines = wait_for_lines(dir_ / "error.log", 2);
  ASSERT_EQ(lines.size(), 2u);
  auto a = json::parse(lines[0]);
  EXPECT_EQ(a["level"], "error");
  EXPECT_EQ(a["message"], "internal error");
  EXPECT_EQ(a["task"], "session");
  EXPECT_EQ(a["error"], "vector::_M_range_check");
  EXPECT_EQ(a["request_id"], "rid-1");
  EXPECT_FALSE(json::parse(lines[1]).contains("request_id"));
}

// The access log batches lines (one queue slot per batch): a batch dropped on a full queue counts
// as the lines it held. The access log is a FIFO nobody reads, so the logging thread blocks on
// its write and the queue fills.
TEST_F(LogsTest, DroppedBatchesCountTheirLines) {
  auto fifo = dir_ / "access.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // so the writer's open returns
  ASSERT_GE(reader, 0);
  auto cfg = files();
  cfg.access = fifo.string();
  std::uint64_t dropped = 0;
  std::uint64_t written = 0;
  std::thread drain;
  {
    Logs logs(cfg);
    std::string batch;
    const std::string line = R"({"type":"access","pad":")" + std::string(100, 'x') + "\"}";
    for (int i = 0; i < 7; ++i) {
      if (i > 0) {
        batch += '\n';
      }
      batch += line;
    }
    for (int i = 0; i < 6000; ++i) {  // pipe (64 KiB) + 4,096 slots hold far fewer batches
      logs.access(batch);
    }
    dropped = logs.dropped();
    // Read the FIFO so the logging thread can write the rest; count the lines that made it.
    drain = std::thread([reader, &written] {
      char buf[65536];
      pollfd p{reader, POLLIN, 0};
      while (::poll(&p, 1, 5000) > 0) {  // EOF once the Logs are gone; 5 s bounds a failure
        auto n = ::read(reader, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN) {
          continue;
        }
        if (n <= 0) {
          break;
        }
        written += static_cast<std::uint64_t>(std::count(buf, buf + n, '\n'));
      }
    });
  }  // the destructor writes what is queued and closes the FIFO
  drain.join();
  ::close(reader);
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(written + dropped, 6000u * 7) << "written " << written << ", dropped " << dropped;
}

TEST(ClientIpHasher, DisabledReturnsTheAddress) {
  ClientIpHasher h(false, "k1");
  EXPECT_FALSE(h.enabled());
  EXPECT_EQ(h("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(h("2001:db8::1"), "2001:db8::1");
}

TEST(ClientIpHasher, EnabledReturnsTruncatedHmacSha256) {
  ClientIpHasher h(true, "k1");
  EXPECT_TRUE(h.enabled());
  // python3 -c "import hmac,hashlib; print(hmac.new(b'k1', b'203.0.113.7',
  //             hashlib.sha256).hexdigest()[:32])"
  EXPECT_EQ(h("203.0.113.7"), "3793ecdddeefda1e5129496b4dc961f9");
  EXPECT_EQ(h("2001:db8::1"), "e39435d24ab7950260cded51bb75b049");
}

TEST(ClientIpHasher, StableAndKeyed) {
  ClientIpHasher a(true, "k1"), a2(true, "k1"), b(true, "k2"), empty(true, "");
  EXPECT_EQ(a("203.0.113.7"), a("203.0.113.7"));
  EXPECT_EQ(a("203.0.113.7"), a2("203.0.113.7"));
  EXPECT_EQ(b("203.0.113.7"), "c3e8916f60be8f172d6c743d9282aed6");
  EXPECT_NE(a("203.0.113.7"), b("203.0.113.7"));
  EXPECT_NE(a("203.0.113.7"), a("203.0.113.8"));
  EXPECT_EQ(empty("203.0.113.7"), "0ae66b1ca9efd7ef112dc60a755b2b97");
  auto hashed = a("198.51.100.1");
  EXPECT_EQ(hashed.size(), 32u);
  EXPECT_EQ(hashed.find_first_not_of("0123456789abcdef"), std::string::npos);
}

// --- append_timestamp -------------------------------------------------------------------------

TEST(AppendTimestamp, FormatAndValue) {
  // The same clock append_timestamp reads (std::time() may lag it by a tick), in whole ms.
  auto now_ms = [] {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  };
  auto before = now_ms();
  std::string out = "prefix:";
  append_timestamp(out);
  auto after = now_ms();

  ASSERT_EQ(out.rfind("prefix:", 0), 0u);
  auto ts = out.substr(7);
  ASSERT_TRUE(is_timestamp(ts)) << ts;

  std::tm tm{};
  ASSERT_NE(::strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &tm), nullptr);
  std::int64_t ms = static_cast<std::int64_t>(::timegm(&tm)) * 1000 + std::stoi(ts.substr(20, 3));
  EXPECT_GE(ms, before) << ts;
  EXPECT_LE(ms, after) << ts;
}

TEST(AppendTimestamp, RepeatedCallsStayWellFormed) {
  // The per-thread cache must not leak a stale or truncated prefix.
  for (int i = 0; i < 1000; ++i) {
    std::string out;
    append_timestamp(out);
    ASSERT_TRUE(is_timestamp(out)) << out;
  }
}

}  // namespace
TEST_F(LogsTest, TextFormatWritesLogfmtInFieldOrder) {
  auto cfg = files();
  cfg.format = config::LogFormat::text;
  Logs logs(cfg);
  // One batch of two lines, as workers hand them over; the second has values needing quotes.
  logs.access(R"({"type":"access","status":200,"route":null,"ok":true})"
              "\n"
              R"({"path":"/a b","user_agent":"say \"hi\"","empty":""})");
  logs.access("not json");
  logs.flush();
  EXPECT_EQ(
      wait_for_lines(dir_ / "access.log", 3),
      (std::vector<std::string>{R"(type=access status=200 route=- ok=true)",
                                R"(path="/a b" user_agent="say \"hi\"" empty="")", "not json"}));
}

}  // namespace gatehouse::observability
