-- Fills a waiting room for scripts/bench: wrk keeps no cookies, so every request arrives as a
-- new visitor and joins the queue. Each thread stops itself after WR_FILL_PER_THREAD responses
-- (wrk's main thread sleeps on until its -d ends; the caller interrupts it once the room's
-- status shows the queue filled).
local quota = tonumber(os.getenv("WR_FILL_PER_THREAD") or "0")
local done = 0

function response(status, headers, body)
  done = done + 1
  if quota > 0 and done >= quota then
    wrk.thread:stop()
  end
end
