-- Each request with a query string of its own (?n=1, ?n=2, ...) for scripts/bench: the room
-- keeps the queue pages it made lately by everything they were made from, the request's URI
-- among them, so this makes every queue page afresh. A static file ignores the query string.
local n = 0

function request()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?n=" .. n)
end
