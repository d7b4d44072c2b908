// ${VAR} / ${VAR:-default} in the raw text, with a fake environment; then through the loader.
#include "config/interpolate.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using testing::error_of;
using testing::kBase;

const std::map<std::string, std::string> kEnv{{"PORT", "8081"}, {"HOST", "10.1.2.3"},
                                              {"EMPTY", ""},    {"MULTI", "a\nb"},
                                              {"CR", "a\rb"},   {"SPACED", "two words"}};

std::optional<std::string> fake_env(const std::string& name) {
  auto it = kEnv.find(name);
  if (it == kEnv.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::string run(const std::string& text) {
  return detail::interpolate(text, "t.yaml", fake_env);
}

std::string error(const std::string& text) {
  try {
    run(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Interpolate, TextWithoutReferencesIsUnchanged) {
  for (auto text : {"", "a: b\n", "price: $5\n", "x: $$\n", "x: $\n", "x: {a: $}\n"}) {
    EXPECT_EQ(run(text), text);
  }
}

TEST(Interpolate, SetVariables) {
  EXPECT_EQ(run("listen: ${HOST}:${PORT}\n"), "listen: 10.1.2.3:8081\n");
  EXPECT_EQ(run("x: ${PORT}${PORT}"), "x: 80818081");
  EXPECT_EQ(run("x: \"${SPACED}\""), "x: \"two words\"");
  EXPECT_EQ(run("x: '${PORT}'"), "x: '8081'");
}

TEST(Interpolate, SetButEmptyVariableWithoutDefaultIsEmpty) {
  EXPECT_EQ(run("x: [${EMPTY}]"), "x: []");
}

TEST(Interpolate, Defaults) {
  EXPECT_EQ(run("x: ${UNSET:-fallback}"), "x: fallback");
  EXPECT_EQ(run("x: ${PORT:-9999}"), "x: 8081");
  EXPECT_EQ(run("x: ${EMPTY:-used when empty}"), "x: used when empty");
  EXPECT_EQ(run("x: ${UNSET:-}"), "x: ");
  EXPECT_EQ(run("x: ${UNSET:-127.0.0.1:80}"), "x: 127.0.0.1:80");
  EXPECT_EQ(run("x: ${UNSET:-/var/log/a b.log}"), "x: /var/log/a b.log");
  EXPECT_EQ(run("x: ${UNSET:-a:-b}"), "x: a:-b");
}

TEST(Interpolate, DoubleDollarIsALiteralReference) {
  EXPECT_EQ(run("x: $${PORT}"), "x: ${PORT}");
  EXPECT_EQ(run("x: $${UNSET}"), "x: ${UNSET}");
  // Only "$${" is an escape; a lone '$' before it is kept.
  EXPECT_EQ(run("x: $$${PORT}"), "x: $${PORT}");
  EXPECT_EQ(run("x: $$"), "x: $$");
}

TEST(Interpolate, LineNumbersAreKept) {
  std::string text = "a: ${PORT}\nb: ${HOST:-x}\nc: 1\n";
  EXPECT_EQ(run(text), "a: 8081\nb: 10.1.2.3\nc: 1\n");
}

TEST(Interpolate, CommentsAreLeftAlone) {
  EXPECT_EQ(run("# uses ${UNSET}\na: 1\n"), "# uses ${UNSET}\na: 1\n");
  EXPECT_EQ(run("  # indented ${UNSET}\n"), "  # indented ${UNSET}\n");
  EXPECT_EQ(run("a: ${PORT} # was ${UNSET}\n"), "a: 8081 # was ${UNSET}\n");
  EXPECT_EQ(run("a: 1\t# ${UNSET}\nb: ${PORT}\n"), "a: 1\t# ${UNSET}\nb: 8081\n");
  EXPECT_EQ(run("#${UNSET}\n"), "#${UNSET}\n");
}

TEST(Interpolate, HashInsideValuesIsNotAComment) {
  EXPECT_EQ(run("a: x#${PORT}\n"), "a: x#8081\n");
  EXPECT_EQ(run("a: \"x #${PORT}\"\n"), "a: \"x #8081\"\n");
  EXPECT_EQ(run("a: 'x #${PORT}'\n"), "a: 'x #8081'\n");
  EXPECT_EQ(run("a: 'it''s #${PORT}'\n"), "a: 'it''s #8081'\n");
  EXPECT_EQ(run("a: \"q\\\" #${PORT}\"\n"), "a: \"q\\\" #8081\"\n");
  EXPECT_EQ(run("a: [\"x #${PORT}\", 'y #${PORT}']\n"), "a: [\"x #8081\", 'y #8081']\n");
  EXPECT_EQ(run("a: \"first\n  #${PORT}\"\n"), "a: \"first\n  #8081\"\n");
  // An apostrophe inside a plain scalar does not open a quote.
  EXPECT_EQ(run("a: don't # ${UNSET}\nb: ${PORT}\n"), "a: don't # ${UNSET}\nb: 8081\n");
}

TEST(Interpolate, Errors) {
  EXPECT_EQ(error("a: 1\nb: x${UNSET}\n"),
            "t.yaml:2:5: ${UNSET}: environment variable UNSET is not set (use ${UNSET:-default} to "
            "give a default)");
  EXPECT_EQ(error("a: ${1X}"),
            "t.yaml:1:4: ${1X}: invalid variable reference (expected ${NAME} or ${NAME:-default}, "
            "NAME made of letters, digits and '_')");
  EXPECT_EQ(error("a: ${}"),
            "t.yaml:1:4: ${}: invalid variable reference (expected ${NAME} or ${NAME:-default}, "
            "NAME made of letters, digits and '_')");
  EXPECT_EQ(error("a: ${PORT-1}"),
            "t.yaml:1:4: ${PORT-1}: invalid variable reference (expected ${NAME} or "
            "${NAME:-default}, NAME made of letters, digits and '_')");
  EXPECT_EQ(error("a: ${A B}"),
            "t.yaml:1:4: ${A B}: invalid variable reference (expected ${NAME} or "
            "${NAME:-default}, NAME made of letters, digits and '_')");
  EXPECT_EQ(error("a: ${PORT\nb: }"),
            "t.yaml:1:4: ${PORT: unterminated variable reference (missing '}')");
  EXPECT_EQ(error("a: 1\n\n   ${PORT"),
            "t.yaml:3:4: ${PORT: unterminated variable reference (missing '}')");
  EXPECT_EQ(error("a: ${MULTI}"),
            "t.yaml:1:4: ${MULTI}: environment variable MULTI contains a line break");
  EXPECT_EQ(error("a: ${CR}"), "t.yaml:1:4: ${CR}: environment variable CR contains a line break");
  EXPECT_EQ(error("a: ${UNSET:-x\n}"),
            "t.yaml:1:4: ${UNSET:-x: unterminated variable reference (missing '}')");
}

// --- through the loader (real environment) -------------------------------------------------------

class LoaderInterpolation : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("GH_UNIT_PORT", "18080", 1);
    ::setenv("GH_UNIT_PREFIX", "/from-env", 1);
    ::unsetenv("GH_UNIT_UNSET");
  }
  void TearDown() override {
    ::unsetenv("GH_UNIT_PORT");
    ::unsetenv("GH_UNIT_PREFIX");
  }
};

TEST_F(LoaderInterpolation, ValuesComeFromTheEnvironment) {
  auto c = load_config_string(kBase +
                                  "listen: 127.0.0.1:${GH_UNIT_PORT}\n"
                                  "routes:\n"
                                  "  - name: ${GH_UNIT_UNSET:-fallback-route}\n"
                                  "    match: {path_prefix: \"${GH_UNIT_PREFIX:-/default}\"}\n"
                                  "    upstream: app\n"
                                  "log: {access: \"/tmp/$${literal}.log\"}\n",
                              "t.yaml", filters::config_sections());
  EXPECT_EQ(c.listen.to_string(), "127.0.0.1:18080");
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].name, "fallback-route");
  EXPECT_EQ(c.routes[0].match.path_prefix, "/from-env");
  EXPECT_EQ(c.log.access, "/tmp/${literal}.log");
}

TEST_F(LoaderInterpolation, UnsetVariableNamesFileLineAndVariable) {
  EXPECT_EQ(error_of(kBase + "drain_timeout: ${GH_UNIT_UNSET}\n"),
            "t.yaml:4:16: ${GH_UNIT_UNSET}: environment variable GH_UNIT_UNSET is not set (use "
            "${GH_UNIT_UNSET:-default} to give a default)");
  EXPECT_EQ(error_of(kBase + "listen: \"127.0.0.1:${GH_UNIT_UNSET}\"\n"),
            "t.yaml:4:20: ${GH_UNIT_UNSET}: environment variable GH_UNIT_UNSET is not set (use "
            "${GH_UNIT_UNSET:-default} to give a default)");
}

TEST_F(LoaderInterpolation, CommentedOutReferencesDoNotFail) {
  EXPECT_EQ(error_of(kBase + "# drain_timeout: ${GH_UNIT_UNSET}\n"
                             "drain_timeout: 1s  # or ${GH_UNIT_UNSET}\n"),
            "(no error)");
}

TEST_F(LoaderInterpolation, SubstitutedValueIsValidatedAtItsLine) {
  EXPECT_EQ(error_of(kBase + "drain_timeout: ${GH_UNIT_UNSET:-30}\n"),
            "t.yaml:4:16: drain_timeout: invalid duration \"30\": a unit is required, e.g. \"30s\" "
            "(units: ms, s, m, h, d)");
  EXPECT_EQ(error_of(kBase + "listen: ${GH_UNIT_PORT}\n"),
            "t.yaml:4:9: listen: invalid address \"18080\" (expected HOST:PORT, [IPV6]:PORT or "
            ":PORT)");
}

}  // namespace
}  // namespace gatehouse::config
