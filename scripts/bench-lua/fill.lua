-- Fills a waiting room for scripts/bench: every visitor is new (wrk keeps no cookies), says it
-- loads a page (only page loads take a place), and comes back once with the arrival cookie it
-- was given, which takes its place in line. Each thread stops itself after WR_FILL_PER_THREAD
-- places taken (wrk's main thread sleeps on until its -d ends; the caller interrupts it once the
-- room's status shows the queue filled).
local quota = tonumber(os.getenv("WR_FILL_PER_THREAD") or "0")
local done = 0
local arrivals = {}

function request()
  local h = { ["Accept"] = "text/html", ["Sec-Fetch-Mode"] = "navigate", ["Sec-Fetch-Dest"] = "document" }
  local c = table.remove(arrivals)
  if c then
    h["Cookie"] = c
  end
  return wrk.format("GET", nil, h)
end

function response(status, headers, body)
  local set = headers["Set-Cookie"]
  -- The queue page of a first contact says so (arr='1'); that of a place taken does not.
  if set and body and body:find("arr='1'", 1, true) then
    table.insert(arrivals, set:match("^([^;]+)"))
    return
  end
  done = done + 1
  if quota > 0 and done >= quota then
    wrk.thread:stop()
  end
end
