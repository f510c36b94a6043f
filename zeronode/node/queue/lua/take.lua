-- Take a queue's next job and start it, writing what rq 3's Execution.create
-- and Job.prepare_for_execution write (zeronode/node/queue/rq_layout.py explains why),
-- and the worker's state as rq's workers keep it: busy, idle, or suspended while
-- `rq suspend`'s key is set, when nothing is taken.
--
-- KEYS[1] queue list        KEYS[2] rq's intermediate list
-- KEYS[3] started registry  KEYS[4] the worker's executions set
-- KEYS[5] the worker's hash KEYS[6] rq's suspension key
-- ARGV[1] worker name       ARGV[2] new execution id
-- ARGV[3] now, rq's text    ARGV[4] now, float seconds    ARGV[5] now, whole seconds
-- ARGV[6] heartbeat ttl     ARGV[7] cancel-flag key prefix
-- ARGV[8] job key prefix    ARGV[9] execution key prefix  ARGV[10] executions registry prefix
-- ARGV[11] id of a job already moved to the intermediate list (by BLMOVE), or ''
-- ARGV[12] the state this worker last wrote ('' if unknown): not written again
--
-- Returns nil when the queue is empty, else {job id, state, fields}, where state is
-- 0 started, 1 canceled (not started), 2 not to be run (deleted, or not queued: a stray
-- second copy of its id in the queue must never start it again), 3 nothing taken: the
-- workers are suspended (a job BLMOVE held goes back to the head of the queue), and
-- fields are the job's data, meta, result_ttl, failure_ttl and retries_left.

-- Only when it changes (a busy runner's takes write it once), and only while the
-- worker's hash exists (its heartbeat keeps it): a write here never makes a hash
-- without its TTL.
local function set_state(state)
  if state ~= ARGV[12] and redis.call('EXISTS', KEYS[5]) == 1 then redis.call('HSET', KEYS[5], 'state', state) end
end

local job_id = ARGV[11]
if redis.call('EXISTS', KEYS[6]) == 1 then
  if job_id ~= '' then
    redis.call('LREM', KEYS[2], 1, job_id)
    redis.call('LPUSH', KEYS[1], job_id)
  end
  set_state('suspended')
  return {'', 3, {}}
end
if job_id == '' then
  job_id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not job_id then
    set_state('idle')
    return nil
  end
end
local job_key = ARGV[8] .. job_id
local FIELDS = {'data', 'meta', 'result_ttl', 'failure_ttl', 'retries_left'}
local status = redis.call('HGET', job_key, 'status')
if not status then
  redis.call('LREM', KEYS[2], 1, job_id)
  return {job_id, 2, {}}
end
if redis.call('EXISTS', ARGV[7] .. job_id) == 1 or status == 'canceled' then
  return {job_id, 1, redis.call('HMGET', job_key, unpack(FIELDS))}
end
if status ~= 'queued' then
  redis.call('LREM', KEYS[2], 1, job_id)
  return {job_id, 2, {}}
end

local ttl = tonumber(ARGV[6])
local now = tonumber(ARGV[5])
local composite = job_id .. ':' .. ARGV[2]
local execution_key = ARGV[9] .. composite
redis.call('HSET', execution_key, 'id', ARGV[2], 'job_id', job_id, 'created_at', ARGV[4],
           'last_heartbeat', ARGV[4], 'worker_name', ARGV[1])
redis.call('EXPIRE', execution_key, ttl)
local executions = ARGV[10] .. job_id
redis.call('ZADD', executions, now + ttl + 60, ARGV[2])
redis.call('EXPIRE', executions, ttl + 60)
redis.call('ZADD', KEYS[3], now + ttl, composite)
redis.call('SADD', KEYS[4], composite)
redis.call('EXPIRE', KEYS[4], ttl + 60)
set_state('busy')

-- zeronode's own bookkeeping, in rq's meta: one more attempt, no outcome yet.
local meta = cjson.decode(redis.call('HGET', job_key, 'meta') or '{}')
meta['attempts'] = (meta['attempts'] or 0) + 1
meta['outcome'] = nil
redis.call('HSET', job_key, 'last_heartbeat', ARGV[3], 'status', 'started', 'started_at', ARGV[3],
           'worker_name', ARGV[1], 'meta', cjson.encode(meta))
redis.call('PERSIST', job_key)
redis.call('LREM', KEYS[2], 1, job_id)
return {job_id, 0, redis.call('HMGET', job_key, unpack(FIELDS))}
