--- The skeleton every simulator serves through (payhsm.gateway, payhsm.pos.server,
-- payhsm.mupk, payhsm.aws.server): refusals, the request handler around a system's router, trace and
-- request ids, and error responses. A system brings what is its own: its table of
-- refusals (name -> {HTTP status, code, message}), the JSON shape of its error body and
-- its response headers.
--
--   local service = require "payhsm.service"
--   local S = service.new {
--     name = "gateway",                     -- prefix of the log line of an internal failure
--     errors = M.ERRORS,                    -- must hold INTERNAL (and UNAUTHORIZED with auth)
--     error_body = function(ctx, e, name, detail) return util.object{...} end,
--     headers = function(ctx, e, name) return {["Content-Type"] = "application/json", ...} end,
--                                           -- (e, name: the error row and its name, for errors)
--     challenges = {UNAUTHORIZED = 'Basic realm="payhsm-gateway"'},  -- WWW-Authenticate
--     auth = "required" | "optional" | nil,  -- HTTP Basic against app.users ("optional": when set)
--     trace = "base64url" | "hex" | "uuid", -- trace id format (default base64url)
--     request_id = true,                    -- ctx.crid: Client-Request-Id or a fresh UUID
--   }
--   S.refusal("NOT_FOUND", detail)          -- raises; S:handle turns it into the error response
--   S:handle(app, req, ctx) -> resp          -- calls app:_route(ctx, req) under pcall
--   S:error(ctx, name, detail) -> resp;  S:respond(ctx, status, body [, headers]) -> resp
--   S:bodies() -> {[400] =, [403] =, [413] =, [500] =}  -- for payhsm.http's own answers
--   S:answer(status, reason, headers) -> body, headers  -- the same, with the request's ids
--   S:authorize(app, method, path, headers) -> true | status, body, headers  -- on the headers alone
local util = require "payhsm.util"
local core = require "payhsm.core"

local M = {}

--- Raises a refusal: a row name of the system's errors table and an optional detail.
-- Service:handle answers it with the system's error body; any other error is INTERNAL.
function M.refusal(name, detail)
  error({ refusal = name, detail = detail }, 0)
end

--- Whether err is a refusal raised by M.refusal.
function M.is_refusal(err)
  return type(err) == "table" and err.refusal ~= nil
end

--- A request header by its lower-case name (payhsm.http, lighttpd and nginx hand them
-- over lower-cased), or by its canonical spelling for callers that did not.
function M.header(headers, name)
  if not headers then return nil end
  local v = headers[name]
  if v == nil then
    v = headers[(name:gsub("^%l", string.upper):gsub("%-%l", string.upper))]
  end
  return v
end

--- The client's request id when it is printable ASCII of at most 128 characters,
-- else a fresh random UUID.
function M.request_id(headers)
  local crid = M.header(headers, "client-request-id")
  if type(crid) == "string" and #crid <= 128 and crid:match("^[\32-\126]+$") then return crid end
  return util.uuid()
end

--- A fresh trace id: "base64url" (27 characters, util.trace_id), "hex" (32 lower-case
-- hex digits) or "uuid" (a random UUID, as AWS's request ids).
function M.trace_id(format)
  if format == "hex" then return core.random(16):lower() end
  if format == "uuid" then return util.uuid() end
  return util.trace_id()
end

local Service = {}
Service.__index = Service

--- A service skeleton for one system (see the header).
function M.new(def)
  assert(type(def.errors) == "table" and def.errors.INTERNAL, "service: errors needs an INTERNAL row")
  assert(type(def.error_body) == "function", "service: error_body is required")
  return setmetatable({
    name = def.name or "service",
    errors = def.errors,
    error_body = def.error_body,
    headers = def.headers or function() return { ["Content-Type"] = "application/json" } end,
    challenges = def.challenges or {},
    auth = def.auth,
    trace = def.trace,
    with_request_id = def.request_id,
  }, Service)
end

Service.refusal = M.refusal

--- A response: status, the system's headers (plus extra), body (a string or a value util.json encodes).
function Service:respond(ctx, status, body, extra, e, name)
  local h = self.headers(ctx, e, name)
  for k, v in pairs(extra or {}) do h[k] = v end
  return { status = status, headers = h, body = type(body) == "string" and body or util.json(body) }
end

--- The error response for a refusal name (an unknown name answers as INTERNAL).
function Service:error(ctx, name, detail)
  local e = self.errors[name] or self.errors.INTERNAL
  local resp = self:respond(ctx, e[1], self.error_body(ctx, e, name, detail), nil, e, name)
  if self.challenges[name] then resp.headers["WWW-Authenticate"] = self.challenges[name] end
  return resp
end

--- A new request context: trace id, and the request id when the system has them.
function Service:context(req, ctx)
  ctx = ctx or {}
  ctx.trace = ctx.trace or M.trace_id(self.trace)
  if self.with_request_id and not ctx.crid then ctx.crid = M.request_id(req.headers) end
  return ctx
end

--- Handles one request: checks HTTP Basic when the system asks for it, then runs
-- app:_route(ctx, req). A refusal is answered with the system's error body; any other
-- failure with INTERNAL, its text kept in app.last_error and sent to app.log (never to
-- the client).
function Service:handle(app, req, ctx)
  ctx = self:context(req, ctx)
  if (self.auth == "required" or (self.auth == "optional" and app.users))
     and not util.basic_auth_ok(M.header(req.headers, "authorization"), app.users or {}) then
    return self:error(ctx, "UNAUTHORIZED")
  end
  local ok, resp = pcall(app._route, app, ctx, req)
  if ok then return resp end
  if M.is_refusal(resp) then return self:error(ctx, resp.refusal, resp.detail) end
  app.last_error = tostring(resp)
  if app.log then app.log(self.name .. ": internal error: " .. app.last_error) end
  return self:error(ctx, "INTERNAL")
end

-- The rows of the answers payhsm.http gives itself, for systems whose table has none.
local OWN = {
  [400] = { "BAD_REQUEST", { 400, "400", "Bad request" } },
  [403] = { "FORBIDDEN", { 403, "403", "client certificate required" } },
  [413] = { "TOO_LARGE", { 413, "413", "body too large" } },
  [500] = { "INTERNAL" },
}

--- The answer payhsm.http gives without the handler (400: a control byte in the path or a
-- repeated single header; 403: no verified client certificate; 413: body over max_body;
-- 500: the handler failed), in the system's error shape with the request's ids (its
-- Client-Request-Id or a fresh one, a fresh trace id): body, response headers.
function Service:answer(status, reason, headers)
  local own = OWN[status] or OWN[500]
  local name = own[1]
  local e = self.errors[name] or own[2] or self.errors.INTERNAL
  local ctx = self:context({ headers = headers or {} }, { now = os.time() })
  local detail = status == 400 and reason or nil
  local body = self.error_body(ctx, e, name, detail)
  return type(body) == "string" and body or util.json(body), self.headers(ctx, e, name)
end

--- Checks HTTP Basic on the headers alone, before payhsm.http reads any body: true, or
-- the UNAUTHORIZED answer (status, body, headers with the challenge). Service:handle
-- checks again (hosts that embed the handler have no such hook).
function Service:authorize(app, method, path, headers)
  if (self.auth == "required" or (self.auth == "optional" and app.users))
     and not util.basic_auth_ok(M.header(headers, "authorization"), app.users or {}) then
    local ctx = self:context({ headers = headers }, { now = app.clock and app.clock() or os.time() })
    local resp = self:error(ctx, "UNAUTHORIZED")
    return resp.status, resp.body, resp.headers
  end
  return true
end

--- The JSON bodies of the answers payhsm.http gives without the handler: 403 (no
-- verified client certificate), 413 (body over max_body), 500 (the handler failed),
-- each {"error": {"code", "message"}} with the 500 taken from the system's INTERNAL row.
-- (Hosts without a per-request hook; payhsm.http prefers Service:answer.)
function Service:bodies()
  local e = self.errors.INTERNAL
  return {
    [400] = util.json(util.object { "error", util.object { "code", "400", "message", "Bad request" } }),
    [403] = util.json(util.object { "error", util.object { "code", "403", "message", "client certificate required" } }),
    [413] = util.json(util.object { "error", util.object { "code", "413", "message", "body too large" } }),
    [500] = util.json(util.object { "error", util.object { "code", e[2], "message", e[3] } }),
  }
end

return M
