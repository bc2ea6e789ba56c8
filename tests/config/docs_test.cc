// docs/configuration.md is the operator's reference for every key; it must
// name each key and its environment variable so that it cannot drift from
// the key table in src/config/config.cc.
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"
#include "support/test_util.h"

namespace orch {
namespace {

std::string ConfigurationDoc() {
  return test::ReadFile(test::SourceDir() + "/docs/configuration.md");
}

TEST(DocsReference, ConfigurationDocExists) {
  EXPECT_FALSE(ConfigurationDoc().empty()) << test::SourceDir() << "/docs/configuration.md";
}

TEST(DocsReference, EveryConfigKeyIsDocumented) {
  const std::string doc = ConfigurationDoc();
  ASSERT_FALSE(ConfigKeys().empty());
  for (const auto& key : ConfigKeys()) {
    EXPECT_NE(std::string::npos, doc.find("`" + key.name + "`"))
        << key.name << " is missing from docs/configuration.md";
  }
}

TEST(DocsReference, EveryEnvironmentVariableIsDocumented) {
  const std::string doc = ConfigurationDoc();
  for (const auto& key : ConfigKeys()) {
    EXPECT_NE(std::string::npos, doc.find("`" + key.env + "`"))
        << key.env << " (for " << key.name << ") is missing from docs/configuration.md";
  }
}

}  // namespace
}  // namespace orch
