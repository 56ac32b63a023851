-- wrk script: every request redeems a pass never used before, at a qualified site.
-- Reads pass codes and site tokens from the files the benchmark wrote (paths in env vars).
local function lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end

local codes = lines(os.getenv("BENCH_CODES"))
local tokens = lines(os.getenv("BENCH_TOKENS"))
local threads_total = tonumber(os.getenv("BENCH_THREADS"))
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local n = 0
request = function()
  n = n + 1
  local i = (n - 1) * threads_total + (tid or 0) + 1
  local code = codes[((i - 1) % #codes) + 1]
  local token = tokens[(i % #tokens) + 1]
  local body = '{"code":"' .. code .. '","learning_path":"basic-skills","workshop_date":"2026-11-20","duration_minutes":60}'
  return wrk.format("POST", "/redemptions",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
