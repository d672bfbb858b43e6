// Declarations shared by the two translation units of hpp_test.
#ifndef WSB_HPP_TEST_HPP
#define WSB_HPP_TEST_HPP

#include "wsbroker.hpp"

#include <string>

// 127.0.0.1:0, no pings, 2 s close timeout.
wsb::ServerConfig test_config();
// One line per event, as the driver expects it ("open /path", "text 5", "close 1000 peer bye").
std::string describe(const wsb::Event &ev);
// Uses the achex and appwebsocket shims from the second translation unit: negative (a refused
// connection's retval) when they work.
int compat_second_tu();

#endif
