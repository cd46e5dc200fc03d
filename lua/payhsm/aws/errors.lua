--- AWS-shaped refusals and JSON bodies for `bin/payhsm serve aws`, in one place.
-- Every error is HTTP status + `x-amzn-ErrorType` header + a JSON 1.0 body
-- {"__type": TYPE, "message": TEXT} (plus the exception's own members, e.g.
-- ResourceId), which the AWS SDKs turn into the exception class named TYPE.
-- Statuses are those of the AWS Payment Cryptography Control Plane API reference
-- ("Errors": 400 for the client exceptions, 500 for InternalServerException and
-- ServiceUnavailableException); the SigV4 refusals are those AWS's JSON services give.
local util = require "payhsm.util"

local M = {}

M.STATUS = {
  ValidationException = 400, ResourceNotFoundException = 400, AccessDeniedException = 400,
  ConflictException = 400, ServiceQuotaExceededException = 400, ThrottlingException = 400,
  InternalServerException = 500, ServiceUnavailableException = 500,
  -- request-level refusals (authentication, protocol)
  UnrecognizedClientException = 400, InvalidSignatureException = 400, IncompleteSignatureException = 400,
  MissingAuthenticationTokenException = 403, UnknownOperationException = 400, SerializationException = 400,
}

--- Raises an AWS exception inside a handler (caught by the dispatcher).
function M.raise(kind, message, extra)
  assert(M.STATUS[kind], "unknown AWS error type " .. tostring(kind))
  error({ aws = kind, message = message, extra = extra }, 0)
end

-- A Lua table as JSON: arrays made with M.array, objects with sorted member names
-- (cjson cannot tell an empty array from an empty object).
local ARRAY = {}
function M.array(t) return setmetatable(t or {}, ARRAY) end

local function convert(v)
  if type(v) ~= "table" then return v end
  if getmetatable(v) == ARRAY then
    local items = {}
    for i, x in ipairs(v) do items[i] = convert(x) end
    return util.array(items)
  end
  local names = {}
  for k in pairs(v) do names[#names + 1] = k end
  table.sort(names)
  local kv = {}
  for _, k in ipairs(names) do
    kv[#kv + 1] = k
    kv[#kv + 1] = convert(v[k])
  end
  return util.object(kv)
end

local function has_array(v)
  if type(v) ~= "table" then return false end
  if getmetatable(v) == ARRAY then return true end
  for _, x in pairs(v) do if type(x) == "table" and has_array(x) then return true end end
  return false
end

local cjson = require "cjson"

--- JSON text of a response table (cjson itself when no empty array can be met).
function M.json(v)
  if not has_array(v) then return cjson.encode(v) end
  return util.json(convert(v))
end

--- A body already encoded as JSON text (e.g. a cached Key structure), for M.ok.
local RAW = {}
function M.raw(text) return setmetatable({ text = text }, RAW) end

local CONTENT_TYPE = "application/x-amz-json-1.0"

--- A 200 answer with a JSON body.
function M.ok(body, request_id)
  return { status = 200, headers = { ["Content-Type"] = CONTENT_TYPE, ["x-amzn-RequestId"] = request_id },
    body = getmetatable(body) == RAW and body.text or M.json(body or {}) }
end

-- The service skeleton (payhsm.service) with AWS's error shape: a row per exception type
-- ({status, type, default message}); the answers payhsm.http gives itself (a control byte in
-- the path, a repeated header, a body over max_body, a failed handler) take AWS's shape too.
local ROWS = {}
for kind, status in pairs(M.STATUS) do ROWS[kind] = { status, kind, kind } end
ROWS.INTERNAL = { 500, "InternalServerException",
  "The request processing has failed because of an unknown error, exception or failure." }
ROWS.BAD_REQUEST = { 400, "SerializationException", "The request could not be parsed" }
ROWS.FORBIDDEN = { 403, "AccessDeniedException", "A client certificate is required" }
ROWS.TOO_LARGE = { 413, "ValidationException", "The request body is too large" }

M.service = require("payhsm.service").new {
  name = "aws",
  errors = ROWS,
  trace = "uuid",
  error_body = function(ctx, e, _, detail)
    local kind, message = e[2], detail or e[3]
    local body = { __type = kind, message = message }
    if kind ~= "ResourceNotFoundException" then body.Message = message end
    for k, v in pairs(ctx.extra or {}) do body[k] = v end
    return M.json(body)
  end,
  headers = function(ctx, e)
    local h = { ["Content-Type"] = CONTENT_TYPE, ["x-amzn-RequestId"] = ctx.trace }
    if e then h["x-amzn-ErrorType"] = e[2] end
    return h
  end,
}

--- The answer to an AWS exception of `kind` (a message, the request id, extra members).
function M.response(kind, message, request_id, extra)
  -- a kind of the other plane (VerificationFailedException) gets its row here; its caller
  -- sets the data plane's status
  if not ROWS[kind] then ROWS[kind] = { 500, kind, kind } end
  return M.service:error({ trace = request_id, extra = extra }, kind, message)
end

return M
