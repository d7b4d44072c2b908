#pragma once
// The admin listener's live dashboard: GET /dashboard (this page, compiled in from
// src/server/dashboard.html) polls GET /dashboard.json (Gateway::dashboard_json, dashboard.cpp)
// every second. Operators only: served on admin_listen, never on the public listeners.
#include <string>
#include <string_view>

namespace gatehouse::server {

extern const std::string_view kDashboardHtml;

// The page's Content-Security-Policy: nothing but its own inline script and style (by hash),
// and requests to the admin listener itself.
const std::string& dashboard_csp();

}  // namespace gatehouse::server
