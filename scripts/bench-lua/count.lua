-- Sends a fixed number of requests for scripts/bench (its instruction counts): each thread
-- stops after WR_COUNT_PER_THREAD responses and then creates the file WR_COUNT_DONE (wrk's
-- main thread sleeps on until its -d ends; the caller interrupts it once the file is there).
-- A response other than 200 is reported on stderr.
local quota = tonumber(os.getenv("WR_COUNT_PER_THREAD") or "0")
local done_file = os.getenv("WR_COUNT_DONE")
local done = 0

function response(status, headers, body)
  done = done + 1
  if status ~= 200 then
    io.stderr:write("count.lua: status " .. status .. "\n")
  end
  if quota > 0 and done == quota then
    if done_file then
      local f = io.open(done_file, "w")
      if f then f:close() end
    end
    wrk.thread:stop()
  end
end
