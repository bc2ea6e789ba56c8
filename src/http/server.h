// HTTP server on libuv + llhttp. Placeholder header: the implementation lands
// with the HTTP work.
#pragma once
