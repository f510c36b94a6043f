-- Finish a started job, writing what rq 3's Job._handle_success (or, on
-- failure, FailedJobRegistry.add and Result.create_failure), Job.cleanup and
-- Execution.delete write, and the worker's counts as rq's workers keep them
-- (zeronode/node/queue/rq_layout.py explains why).
--
-- KEYS[1] job hash               KEYS[2] execution hash     KEYS[3] the job's executions registry
-- KEYS[4] started registry       KEYS[5] worker's executions set
-- KEYS[6] finished or failed registry                       KEYS[7] the job's result stream
-- KEYS[8] the worker's hash
-- ARGV[1] job id      ARGV[2] execution id    ARGV[3] status ('finished' or 'failed')
-- ARGV[4] ended_at, rq's text                 ARGV[5] meta (serialized)
-- ARGV[6] ttl         ARGV[7] registry score  ARGV[8] seconds the job took, from its start
-- ARGV[9..] the result stream entry: field, value, field, value, ...
-- (rq 3 keeps a failure's exception in the result stream only, not in the job's hash.)
--
-- Returns 0, writing nothing, when the execution is no longer in the started
-- registry: the runner missed its heartbeats and the monitor took the job back.

local composite = ARGV[1] .. ':' .. ARGV[2]
if not redis.call('ZSCORE', KEYS[4], composite) then
  return 0
end

redis.call('HSET', KEYS[1], 'status', ARGV[3], 'ended_at', ARGV[4], 'meta', ARGV[5])
local ttl = tonumber(ARGV[6])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[1])

local entry = {}
for i = 9, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[7], 'MAXLEN', '~', 10, '*', unpack(entry))  -- rq keeps 10 results a job
redis.call('EXPIRE', KEYS[7], ttl)

redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], composite)
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[5], composite)

-- rq's successful_job_count or failed_job_count, and total_working_time; only while
-- the worker's hash exists (its heartbeat keeps it), so never a hash without its TTL.
if redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('HINCRBY', KEYS[8], ARGV[3] == 'finished' and 'successful_job_count' or 'failed_job_count', 1)
  redis.call('HINCRBYFLOAT', KEYS[8], 'total_working_time', ARGV[8])
end
return 1
