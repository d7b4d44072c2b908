// cache_bus (issue 14): the bus's message format, the prefixes it accepts, the admin endpoint's
// prefix, and the Invalidator (local purge, the bounded queue for the bus, counters).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "filters/cache_bus/invalidator.hpp"
#include "filters/cache_bus/message.hpp"

namespace gatehouse::filters::cache_bus {
namespace {

constexpr std::string_view kId = "0123456789abcdef";

TEST(CacheBusMessage, RoundTrips) {
  auto text = encode(kId, "/api/slugs/");
  EXPECT_EQ(text, "gh1 0123456789abcdef /api/slugs/");
  auto m = decode(text);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->instance, kId);
  EXPECT_EQ(m->prefix, "/api/slugs/");
  // A Message views the payload it was decoded from: keep the text alive while it is read.
  const auto root_text = encode(kId, "/");
  auto root = decode(root_text);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->prefix, "/");
}

TEST(CacheBusMessage, InstanceIdsAreHexAndDiffer) {
  auto a = new_instance_id();
  auto b = new_instance_id();
  EXPECT_EQ(a.size(), kInstanceIdSize);
  EXPECT_NE(a, b);
  EXPECT_TRUE(decode(encode(a, "/x")));
}

TEST(CacheBusMessage, RefusesWhatIsNotAnInvalidation) {
  const std::string longest(config::Route::kMaxInvalidatePrefix - 1, 'a');
  EXPECT_TRUE(decode(encode(kId, "/" + longest)));
  for (std::string bad : {
           std::string(""), std::string("hello"), std::string("gh1"),
           std::string("gh1 0123456789abcdef"),
           std::string("gh1 0123456789abcdef "),         // no prefix
           std::string("gh2 0123456789abcdef /a"),       // another version
           std::string("gh1 0123456789ABCDEF /a"),       // upper-case id
           std::string("gh1 0123456789abcde /a"),        // short id
           std::string("gh1 0123456789abcdefx/a"),       // no separator
           std::string("gh1  0123456789abcdef /a"),      // two blanks
           std::string("gh1 0123456789abcdef a"),        // not a path
           std::string("gh1 0123456789abcdef /a b"),     // not canonical
           std::string("gh1 0123456789abcdef /a/../b"),  // dot segment
           std::string("gh1 0123456789abcdef /a%2fb"),   // encoded slash
           std::string("gh1 0123456789abcdef /%7e"),     // canonical is "/~"
           std::string("gh1 0123456789abcdef /a\r\n"),   // control characters
           encode(kId, "/" + longest + "a"),             // prefix too long
       }) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(decode(bad));
  }
}

TEST(CacheBusMessage, BoundedInSize) {
  EXPECT_LE(encode(kId, "/" + std::string(config::Route::kMaxInvalidatePrefix - 1, 'a')).size(),
            kMaxMessage);
  EXPECT_FALSE(decode(std::string(kMaxMessage + 1, 'a')));
}

TEST(CacheBusAdminPrefix, CanonicalOrRefused) {
  EXPECT_EQ(admin_prefix("/api/slugs/", true).prefix, "/api/slugs/");
  EXPECT_EQ(admin_prefix("/", true).prefix, "/");
  EXPECT_EQ(admin_prefix("/a//b", true).prefix, "/a/b");
  EXPECT_EQ(admin_prefix("/a//b", false).prefix, "/a//b");
  EXPECT_EQ(admin_prefix("/%7euser", true).prefix, "/~user");
  EXPECT_EQ(admin_prefix("/caf\xc3\xa9", true).prefix, "/caf%C3%A9");
  for (std::string bad : {"", "api", "/a?b", "/a#b", "/a/../b", "/a%2Fb", "/a\\b"}) {
    SCOPED_TRACE(bad);
    auto p = admin_prefix(bad, true);
    EXPECT_FALSE(p.error.empty());
    EXPECT_TRUE(p.prefix.empty());
  }
  auto too_long = admin_prefix("/" + std::string(config::Route::kMaxInvalidatePrefix, 'a'), true);
  EXPECT_FALSE(too_long.error.empty());
}

struct Recorder {
  std::vector<std::string> purged;
  Invalidator::Purge purge() {
    return [this](std::string_view p) {
      purged.emplace_back(p);
      return p.size();  // "entries removed": something the counters can be checked against
    };
  }
};

TEST(Invalidator, PurgesAndCountsWithoutABus) {
  Recorder r;
  Invalidator inv(r.purge());
  EXPECT_FALSE(inv.shared());
  EXPECT_EQ(inv.invalidate("/api/slugs/", Origin::local), 11u);
  EXPECT_EQ(inv.invalidate("/x", Origin::admin), 2u);
  EXPECT_EQ(r.purged, (std::vector<std::string>{"/api/slugs/", "/x"}));
  EXPECT_EQ(inv.invalidations(Origin::local), 1u);
  EXPECT_EQ(inv.purged(Origin::local), 11u);
  EXPECT_EQ(inv.invalidations(Origin::admin), 1u);
  EXPECT_TRUE(inv.take_outbox().empty());  // nothing is queued without cache.shared
  std::string metrics;
  inv.render_metrics(metrics);
  EXPECT_NE(metrics.find("gatehouse_cache_invalidations_total{origin=\"local\"} 1\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("gatehouse_cache_invalidated_entries_total{origin=\"local\"} 11\n"),
            std::string::npos);
  EXPECT_EQ(metrics.find("gatehouse_cache_bus_dropped_total"), std::string::npos);
}

TEST(Invalidator, QueuesLocalAndAdminForTheBusAndWakesItOnce) {
  Recorder r;
  Invalidator inv(r.purge());
  int wakes = 0;
  inv.set_bus([&] { ++wakes; });
  inv.invalidate("/a", Origin::local);
  inv.invalidate("/b", Origin::admin);
  inv.invalidate("/c", Origin::remote);  // came from the bus: not sent back
  inv.invalidate("/", Origin::resync);
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(inv.queued(), 2u);
  EXPECT_EQ(inv.take_outbox(), (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(inv.queued(), 0u);
  inv.invalidate("/d", Origin::local);
  EXPECT_EQ(wakes, 2);             // empty again: the next one wakes the bus
  EXPECT_EQ(r.purged.size(), 5u);  // every origin purges here
}

TEST(Invalidator, AFullQueueBecomesOnePurgeOfEverything) {
  Recorder r;
  Invalidator inv(r.purge());
  int wakes = 0;
  inv.set_bus([&] { ++wakes; });
  for (std::size_t i = 0; i < Invalidator::kMaxOutbox; ++i) {
    inv.invalidate("/p" + std::to_string(i), Origin::local);
  }
  EXPECT_EQ(inv.dropped(), 0u);
  inv.invalidate("/one-too-many", Origin::local);
  inv.invalidate("/and-another", Origin::local);
  EXPECT_EQ(inv.dropped(), Invalidator::kMaxOutbox + 2);
  EXPECT_EQ(inv.queued(), 1u);
  EXPECT_EQ(inv.take_outbox(), (std::vector<std::string>{"/"}));
  EXPECT_EQ(wakes, 1);
  // Local purges never depend on the queue.
  EXPECT_EQ(r.purged.size(), Invalidator::kMaxOutbox + 2);
  inv.invalidate("/again", Origin::local);
  EXPECT_EQ(inv.take_outbox(), (std::vector<std::string>{"/again"}));
  std::string metrics;
  inv.render_metrics(metrics);
  EXPECT_NE(metrics.find("gatehouse_cache_bus_dropped_total 1026\n"), std::string::npos) << metrics;
}

TEST(Invalidator, WithoutAStoreNothingIsPurged) {
  Invalidator inv(nullptr);
  EXPECT_EQ(inv.invalidate("/a", Origin::local), 0u);
  EXPECT_EQ(inv.invalidations(Origin::local), 1u);
}

}  // namespace
}  // namespace gatehouse::filters::cache_bus
