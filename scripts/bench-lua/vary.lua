-- Each request with a query string of its own (?t=1&n=1, ?t=1&n=2, ...) for scripts/bench:
-- the room keeps the queue pages it made lately by everything they were made from, the
-- request's URI among them, so this makes every queue page afresh. Each wrk thread has its
-- own Lua state and counter: the thread's number keeps their URIs apart. A static file
-- ignores the query string.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local n = 0

function request()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?t=" .. tostring(id) .. "&n=" .. n)
end
