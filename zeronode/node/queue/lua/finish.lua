-- Finish started jobs, writing for each what rq 3's Job._handle_success (or, on failure,
-- FailedJobRegistry.add and Result.create_failure), Job.cleanup and Execution.delete
-- write, and the worker's counts as rq's workers keep them (zeronode/node/queue/rq_layout.py
-- explains why). What several jobs share (the registries, the worker's record) is written
-- once for all of them.
--
-- KEYS[1] started registry   KEYS[2] the worker's executions set
-- KEYS[3] finished registry  KEYS[4] failed registry      KEYS[5] the worker's hash
-- ARGV[1] job key prefix     ARGV[2] execution key prefix  ARGV[3] executions registry prefix
-- ARGV[4] result stream key prefix                         ARGV[5] how many jobs
-- then, per job: job id, execution id, status ('finished' or 'failed'), ended_at (rq's
-- text), meta (serialized), ttl, registry score, seconds the job took from its start,
-- n (fields in its result stream entry), then n fields and values of that entry.
-- (rq 3 keeps a failure's exception in the result stream only, not in the job's hash.)
--
-- Returns how many jobs it finished: a job whose execution is no longer in the started
-- registry is skipped, writing nothing (the runner missed its heartbeats and the monitor
-- took the job back).

local count = tonumber(ARGV[5])
local jobs, composites = {}, {}
local at = 6
for i = 1, count do
  local entry_size = tonumber(ARGV[at + 8])
  jobs[i] = at
  composites[i] = ARGV[at] .. ':' .. ARGV[at + 1]
  at = at + 9 + 2 * entry_size
end
local scores = redis.call('ZMSCORE', KEYS[1], unpack(composites))

local registries = {finished = {}, failed = {}}
local counts = {finished = 0, failed = 0}
local working_time = 0
local gone, ended = {}, {}
for i = 1, count do
  if scores[i] then
    local a = jobs[i]
    local job_id, execution_id, status = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    local ttl = tonumber(ARGV[a + 5])
    local job_key = ARGV[1] .. job_id
    redis.call('HSET', job_key, 'status', status, 'ended_at', ARGV[a + 3], 'meta', ARGV[a + 4])
    redis.call('EXPIRE', job_key, ttl)
    local registry = registries[status]
    registry[#registry + 1] = ARGV[a + 6]
    registry[#registry + 1] = job_id
    local stream = ARGV[4] .. job_id
    redis.call('XADD', stream, 'MAXLEN', '~', 10, '*', unpack(ARGV, a + 9, a + 8 + 2 * tonumber(ARGV[a + 8])))  -- rq keeps 10 results a job
    redis.call('EXPIRE', stream, ttl)
    -- Execution.delete: its hash, and its entry in the job's executions registry (the only one: a
    -- job has one execution at a time; the registry goes with it).
    gone[#gone + 1] = ARGV[2] .. composites[i]
    gone[#gone + 1] = ARGV[3] .. job_id
    ended[#ended + 1] = composites[i]
    counts[status] = counts[status] + 1
    working_time = working_time + tonumber(ARGV[a + 7])
  end
end
if #ended == 0 then
  return 0
end
if #registries.finished > 0 then redis.call('ZADD', KEYS[3], unpack(registries.finished)) end
if #registries.failed > 0 then redis.call('ZADD', KEYS[4], unpack(registries.failed)) end
redis.call('DEL', unpack(gone))
redis.call('ZREM', KEYS[1], unpack(ended))
redis.call('SREM', KEYS[2], unpack(ended))

-- rq's successful_job_count and failed_job_count, and total_working_time; only while
-- the worker's hash exists (its heartbeat keeps it), so never a hash without its TTL.
if redis.call('EXISTS', KEYS[5]) == 1 then
  if counts.finished > 0 then redis.call('HINCRBY', KEYS[5], 'successful_job_count', counts.finished) end
  if counts.failed > 0 then redis.call('HINCRBY', KEYS[5], 'failed_job_count', counts.failed) end
  redis.call('HINCRBYFLOAT', KEYS[5], 'total_working_time', working_time)
end
return #ended
