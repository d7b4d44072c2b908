#pragma once
// Precompiled for the networked files only; pure logic never includes Asio or Beast.
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
