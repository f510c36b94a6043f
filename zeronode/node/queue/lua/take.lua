-- Take up to N of a queue's next jobs and start each, writing what rq 3's Execution.create
-- and Job.prepare_for_execution write (zeronode/node/queue/rq_layout.py explains why),
-- and the worker's state as rq's workers keep it: busy, idle, or suspended while
-- `rq suspend`'s key is set, when nothing is taken.
--
-- KEYS[1] queue list        KEYS[2] rq's intermediate list
-- KEYS[3] started registry  KEYS[4] the worker's executions set
-- KEYS[5] the worker's hash KEYS[6] rq's suspension key
-- ARGV[1] worker name       ARGV[2] how many jobs at most (N)
-- ARGV[3] now, rq's text    ARGV[4] now, float seconds    ARGV[5] now, whole seconds
-- ARGV[6] heartbeat ttl     ARGV[7] cancel-flag key prefix
-- ARGV[8] job key prefix    ARGV[9] execution key prefix  ARGV[10] executions registry prefix
-- ARGV[11] id of a job already moved to the intermediate list (by BLMOVE), or ''
-- ARGV[12] the state this worker last wrote ('' if unknown): not written again
-- ARGV[13..12+N] a new execution id for each job
--
-- Returns nil when the queue is empty, {3} when the workers are suspended (nothing taken;
-- a job BLMOVE held goes back to the head of the queue), else {0, job, job, ...}, each job
-- {id, state, fields}: state 0 started, 1 canceled (not started; left in the intermediate
-- list until the runner records it), 2 not to be run (deleted, or not queued: a stray
-- second copy of its id in the queue must never start it again); fields are the job's
-- data, meta, result_ttl, failure_ttl and retries_left.
--
-- The jobs come off the queue, are started and recorded in one step: no job is ever off the
-- queue without being started (in the started registry, the monitor's to recover if this
-- runner dies) or held in the intermediate list.

-- Only when it changes (a busy runner's takes write it once), and only while the
-- worker's hash exists (its heartbeat keeps it): a write here never makes a hash
-- without its TTL.
local function set_state(state)
  if state ~= ARGV[12] and redis.call('EXISTS', KEYS[5]) == 1 then redis.call('HSET', KEYS[5], 'state', state) end
end

local held = ARGV[11]
if redis.call('EXISTS', KEYS[6]) == 1 then
  if held ~= '' then
    redis.call('LREM', KEYS[2], 1, held)
    redis.call('LPUSH', KEYS[1], held)
  end
  set_state('suspended')
  return {3}
end

local wanted = tonumber(ARGV[2])
local ids = {}
if held ~= '' then
  redis.call('LREM', KEYS[2], 1, held)
  ids[1] = held
  wanted = wanted - 1
end
if wanted > 0 then
  local popped = redis.call('LPOP', KEYS[1], wanted)
  if popped then
    for _, id in ipairs(popped) do ids[#ids + 1] = id end
  end
end
if #ids == 0 then
  set_state('idle')
  return nil
end

-- One EXISTS for every job's cancel flag: only when one is set, each job asks for its own.
local flags = {}
for i, id in ipairs(ids) do flags[i] = ARGV[7] .. id end
local any_canceled = redis.call('EXISTS', unpack(flags)) > 0

local ttl = tonumber(ARGV[6])
local now = tonumber(ARGV[5])
local FIELDS = {'status', 'data', 'meta', 'result_ttl', 'failure_ttl', 'retries_left'}
local answers = {0}
local started = {}  -- the started registry's score, member, score, member, ...
local composites = {}
for i, job_id in ipairs(ids) do
  local job_key = ARGV[8] .. job_id
  local values = redis.call('HMGET', job_key, unpack(FIELDS))
  local status = values[1]
  local fields = {values[2], values[3], values[4], values[5], values[6]}
  if not status then
    answers[#answers + 1] = {job_id, 2, {}}
  elseif status == 'canceled' or (any_canceled and redis.call('EXISTS', flags[i]) == 1) then
    redis.call('RPUSH', KEYS[2], job_id)
    answers[#answers + 1] = {job_id, 1, fields}
  elseif status ~= 'queued' then
    answers[#answers + 1] = {job_id, 2, {}}
  else
    local execution_id = ARGV[12 + i]
    local composite = job_id .. ':' .. execution_id
    local execution_key = ARGV[9] .. composite
    redis.call('HSET', execution_key, 'id', execution_id, 'job_id', job_id, 'created_at', ARGV[4],
               'last_heartbeat', ARGV[4], 'worker_name', ARGV[1])
    redis.call('EXPIRE', execution_key, ttl)
    local executions = ARGV[10] .. job_id
    redis.call('ZADD', executions, now + ttl + 60, execution_id)
    redis.call('EXPIRE', executions, ttl + 60)
    started[#started + 1] = now + ttl
    started[#started + 1] = composite
    composites[#composites + 1] = composite

    -- zeronode's own bookkeeping, in rq's meta: one more attempt, no outcome yet.
    local meta = cjson.decode(fields[2] or '{}')
    meta['attempts'] = (meta['attempts'] or 0) + 1
    meta['outcome'] = nil
    fields[2] = cjson.encode(meta)
    redis.call('HSET', job_key, 'last_heartbeat', ARGV[3], 'status', 'started', 'started_at', ARGV[3],
               'worker_name', ARGV[1], 'meta', fields[2])
    redis.call('PERSIST', job_key)
    answers[#answers + 1] = {job_id, 0, fields}
  end
end
if #composites > 0 then
  redis.call('ZADD', KEYS[3], unpack(started))
  redis.call('SADD', KEYS[4], unpack(composites))
  redis.call('EXPIRE', KEYS[4], ttl + 60)
  set_state('busy')
end
return answers
