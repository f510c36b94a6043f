-- Accept verified envelopes: claim each one's id and nonce and enqueue its job,
-- atomically, so that no envelope is ever claimed without its job being queued.
-- The job's hash is what rq's Queue.enqueue writes (zeronode/node/queue/rq_layout.py).
--
-- KEYS[1] rq's set of queues    KEYS[2] the queue list
-- ARGV[1] the queue key         ARGV[2] how many envelopes
-- ARGV[3] m, then m fields and values every job's hash has alike
-- then two arguments per envelope:
--   a JSON array of strings: id key, owner (signer:nonce), id ttl, nonce key, envelope id,
--                            nonce ttl, job key, then the fields and values of its own hash
--   its job's data (zlib, so binary: not JSON)
--
-- Returns one code per envelope: 0 queued, 1 the same envelope again,
-- 2 its id belongs to another envelope, 3 its nonce was already used.

local answers = {}
local shared_first = 4
local shared_last = shared_first + 2 * tonumber(ARGV[3]) - 1
local at = shared_last + 1
for _ = 1, tonumber(ARGV[2]) do
  local job = cjson.decode(ARGV[at])
  local data = ARGV[at + 1]
  at = at + 2
  local id_key, owner, id_ttl = job[1], job[2], tonumber(job[3])
  local nonce_key, envelope_id, nonce_ttl = job[4], job[5], tonumber(job[6])
  local job_key = job[7]

  local id_owner = redis.call('GET', id_key)
  if id_owner == owner then
    answers[#answers + 1] = 1
  elseif id_owner or redis.call('EXISTS', job_key) == 1 then
    answers[#answers + 1] = 2
  elseif redis.call('SET', nonce_key, envelope_id, 'NX', 'EX', nonce_ttl) == false then
    answers[#answers + 1] = 3
  else
    redis.call('SET', id_key, owner, 'EX', id_ttl)
    redis.call('HSET', job_key, 'data', data, unpack(ARGV, shared_first, shared_last))
    redis.call('HSET', job_key, unpack(job, 8))
    redis.call('SADD', KEYS[1], ARGV[1])
    redis.call('RPUSH', KEYS[2], envelope_id)
    answers[#answers + 1] = 0
  end
end
return answers
