--- The simulators' HTTP(S) front: `bin/payhsm serve SYSTEM --config FILE`.
-- Loads the config (a Lua file returning a table, see docs/servers.md), opens the store,
-- builds the system's handler (a module whose new(config) returns an object with
-- :handle(req) -> resp) and serves it with payhsm.http from this (the main) thread,
-- logging one line per request: time, method, path, status, wall-clock milliseconds (also
-- for the 400, 401, 403, 413 and 500 answers payhsm.http gives itself, before the handler). No key bytes,
-- bodies or credentials are logged.
local http = require "payhsm.http"
local core = require "payhsm.core"
local util = require "payhsm.util"

local M = {}

M.systems = { gateway = "payhsm.gateway", pos = "payhsm.pos.server", mupk = "payhsm.mupk", aws = "payhsm.aws.server" }

local function readfile(path, what)
  local f, err = io.open(path, "rb")
  if not f then error(("%s: cannot read %s (%s)"):format(what, path, err), 0) end
  local s = f:read("*a")
  f:close()
  return s
end

--- A config error's text with every run of 16 or more hex digits replaced by
-- "<16+ hex digits>": a syntax error near a key line (a missing closing quote) quotes
-- the source, and the source holds key values.
function M.redact(text)
  return (tostring(text):gsub("%x+", function(run)
    if #run >= 16 then return "<" .. #run .. " hex digits>" end
  end))
end

-- path made relative to dir (unless absolute or dir is "").
local function beside(dir, path)
  if type(path) ~= "string" or path:sub(1, 1) == "/" or dir == "" then return path end
  return dir .. path
end

--- Loads a config file: a Lua chunk returning a table. The file paths in it (tls.cert,
-- tls.key, tls.client_ca, store.path, webhook_cafile) are relative to the config file's
-- directory, not to the working directory.
function M.load_config(path)
  local chunk, err = loadfile(path, "t")
  if not chunk then error("config: " .. M.redact(err), 0) end
  local ok, cfg = pcall(chunk)
  if not ok then error("config: " .. M.redact(cfg), 0) end
  if type(cfg) ~= "table" then error("config: " .. path .. " must return a table", 0) end
  local dir = path:match("^(.*/)") or ""
  if type(cfg.tls) == "table" then
    local tls = {}
    for k, v in pairs(cfg.tls) do tls[k] = v end
    tls.cert, tls.key, tls.client_ca = beside(dir, tls.cert), beside(dir, tls.key), beside(dir, tls.client_ca)
    cfg.tls = tls
  end
  if type(cfg.store) == "table" and cfg.store.path then
    local store = {}
    for k, v in pairs(cfg.store) do store[k] = v end
    store.path = beside(dir, store.path)
    cfg.store = store
  end
  cfg.webhook_cafile = beside(dir, cfg.webhook_cafile)
  return cfg
end

--- Opens the store a config names: {backend = "memory" | "sqlite" | "redis", path =, url =}.
function M.open_store(cfg, default_backend, clock)
  util.checkfields(cfg, "config store", { "backend", "path", "url", "prefix" })
  cfg = cfg or {}
  local backend = cfg.backend or default_backend or "memory"
  if backend == "memory" then
    return require("payhsm.store.memory").new { clock = clock }
  elseif backend == "sqlite" then
    return require("payhsm.store.sqlite").new { path = cfg.path or "payhsm.db", clock = clock }
  elseif backend == "redis" then
    return require("payhsm.store.redis").new { url = cfg.url or "redis://127.0.0.1:6379/0",
      prefix = cfg.prefix, clock = clock }
  end
  error("config: unknown store backend '" .. tostring(backend) .. "'", 0)
end

--- "127.0.0.1:8443" -> "127.0.0.1", 8443
function M.parse_listen(s)
  local host, port = tostring(s):match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
  if not host or tonumber(port) > 65535 then
    error("config: listen must be IPv4:port, e.g. \"127.0.0.1:8443\", got " .. tostring(s), 0)
  end
  return host, tonumber(port)
end

-- Wall-clock milliseconds on the monotonic clock of payhsm.http (os.clock would be the
-- process's CPU time: a request waiting on fsync or redis would log ~0 ms).
local function now_ms()
  return http.clock() * 1000
end

-- The path as logged: bytes outside printable ASCII as %XX (a decoded path may carry a
-- newline or escape sequence; the log stays one line per request).
local function log_path(p)
  return (tostring(p):gsub("[^\33-\126]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- The module of SYSTEM (gateway, pos, mupk, aws); raises "<who>: unknown system" otherwise.
function M.system(system, who)
  local modname = M.systems[system]
  if not modname then
    error(("%s: unknown system '%s' (gateway, pos, mupk, aws)"):format(who or "serve", tostring(system)), 0)
  end
  return require(modname)
end

--- Builds SYSTEM's application from a config table (`bin/payhsm serve` and every embedding
-- host assemble it here): the config's fields, its store opened (default backend
-- default_store) and log = function(line) (default: stderr). Returns the application, the
-- system's module and the opened store.
function M.app(system, cfg, default_store, log, who)
  local mod = M.system(system, who)
  local app_cfg = {}
  for k, v in pairs(cfg) do if k ~= "limits" then app_cfg[k] = v end end
  app_cfg.store = M.open_store(cfg.store, default_store, cfg.clock)
  -- one write per line: the workers of one port append to one log without tearing lines
  app_cfg.log = log or function(line) io.stderr:write(line .. "\n") end
  return mod.new(app_cfg), mod, app_cfg.store
end

--- The config's limits (docs/servers.md) as payhsm.http options: connections, per_address,
-- header_timeout, idle_timeout, max_body (default: the system's module's max_body, else
-- 1 MiB). Raises on an unknown key or a value that is not a positive number.
function M.limits(cfg, mod)
  local l = cfg.limits or {}
  if type(l) ~= "table" then error("config: limits must be a table", 0) end
  util.checkfields(l, "config limits", { "connections", "per_address", "header_timeout", "idle_timeout", "max_body" })
  for k, v in pairs(l) do
    if type(v) ~= "number" or v <= 0 then error(("config: limits.%s must be a positive number"):format(k), 0) end
  end
  return { connections = l.connections, per_address = l.per_address, header_timeout = l.header_timeout,
    idle_timeout = l.idle_timeout, max_body = l.max_body or (mod and mod.max_body) or 1048576 }
end

--- Starts SYSTEM with the config table; returns the http server and the application.
-- opts: default_store ("sqlite" for serve, "memory" otherwise), log = function(line), quiet,
-- listen_fd (a listening socket from core.listen_socket to serve instead of cfg.listen),
-- worker (a worker's pid: each log line ends with "worker=PID" and each answer carries
-- the header X-Payhsm-Worker: PID).
function M.start(system, cfg, opts)
  util.checkfields(opts, "server.start", { "default_store", "log", "quiet", "listen_fd", "worker" })
  opts = opts or {}
  local log = opts.log or function(line) io.stderr:write(line .. "\n") end
  local app, mod, store = M.app(system, cfg, opts.default_store, log)
  local tag = opts.worker and (" worker=" .. opts.worker) or ""
  local function handler(req)
    local t0 = now_ms()
    local resp = app:handle(req)
    log(("%s %s %s %d %.2fms%s"):format(os.date("!%Y-%m-%dT%H:%M:%SZ"), req.method, log_path(req.path),
      resp.status or 200, now_ms() - t0, tag))
    if opts.worker then
      resp.headers = resp.headers or {}
      resp.headers["X-Payhsm-Worker"] = tostring(opts.worker)
    end
    return resp
  end
  -- the answers payhsm.http gives before or instead of the handler (400, 401, 403, 413, 500)
  local function refused(method, path, status, reason)
    log(("%s %s %s %d - (%s)%s"):format(os.date("!%Y-%m-%dT%H:%M:%SZ"), method, log_path(path), status, reason, tag))
  end
  local tls
  if cfg.tls then
    tls = { cert = readfile(cfg.tls.cert, "tls.cert"), key = readfile(cfg.tls.key, "tls.key"),
            client_ca = cfg.tls.client_ca and readfile(cfg.tls.client_ca, "tls.client_ca") }
  end
  local host, port = M.parse_listen(cfg.listen or "127.0.0.1:8443")
  local lim = M.limits(cfg, mod)
  local S = mod.service
  local srv = http.new { host = host, port = port, listen_fd = opts.listen_fd, tls = tls, handler = handler, quiet = opts.quiet,
    on_error = function(e) log("handler error: " .. tostring(e)) end, on_refused = refused,
    bodies = S and S:bodies(), max_body = lim.max_body, connections = lim.connections,
    per_address = lim.per_address, header_timeout = lim.header_timeout, idle_timeout = lim.idle_timeout,
    single_headers = mod.single_headers,
    -- HTTP Basic (and whatever else a system checks on the headers) before any body is read
    authorize = S and S.authorize and function(method, path, headers) return S:authorize(app, method, path, headers) end,
    refusal = S and S.answer and function(status, reason, headers) return S:answer(status, reason, headers) end }
  return srv, app, store
end

-- Serves srv until SIGINT or SIGTERM, then stops it and closes the store. Applications
-- with timed work (the mupk service's expiry webhooks) expose app:tick(), called between
-- requests about once per cfg.tick_interval seconds (default 1). Returns the signal's name.
local function loop(cfg, srv, app, store)
  local interval, last = tonumber(cfg.tick_interval) or 1, 0
  while true do
    srv:run_once(app.tick and math.floor(interval * 1000) or 1000)
    local sig = core.caught_signal()
    if sig then
      srv:close()
      if store and store.close then pcall(store.close, store) end
      return sig
    end
    if app.tick and os.time() - last >= interval then
      last = os.time()
      local ok, err = pcall(app.tick, app)
      if not ok then io.stderr:write("tick error: ", tostring(err), "\n") io.stderr:flush() end
    end
  end
end

local function stamp() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

-- A worker process: its own store connection and event loop on the inherited socket.
-- Exits 0 on SIGTERM/SIGINT, 3 when it cannot start (the parent then gives up).
local function worker(system, cfg, fd)
  local pid = core.getpid()
  core.catch_signals { "INT", "TERM" }
  local ok, srv, app, store = pcall(M.start, system, cfg, { default_store = "sqlite", listen_fd = fd, worker = pid })
  if not ok then
    io.stderr:write(("%s payhsm %s worker %d cannot start: %s\n"):format(stamp(), system, pid, M.redact(srv)))
    io.stderr:flush()
    os.exit(3)
  end
  io.stderr:write(("%s payhsm %s worker %d serving\n"):format(stamp(), system, pid))
  io.stderr:flush()
  loop(cfg, srv, app, store)
  os.exit(0)
end

-- The parent of `serve --workers N`: assembles the application once (config errors and a
-- first start's generated keys happen here, before any worker exists), closes that store,
-- binds N listening sockets on the one port (SO_REUSEPORT: the kernel spreads connections
-- over them), then forks N workers; worker i serves socket i and opens its own store
-- connection. The parent keeps every socket, so a restarting worker's queue waits for it. A worker that dies is forked again (at most once a
-- second per slot); SIGTERM or SIGINT is passed to every worker, and the parent returns
-- once all have exited (SIGKILL for one still running after 30 seconds).
local function supervise(system, cfg, n)
  local backend = type(cfg.store) == "table" and cfg.store.backend or "sqlite"
  if n > 1 and backend == "memory" then
    error(("serve: --workers %d needs a store the workers share (sqlite or redis); a memory store lives in one process"):format(n), 0)
  end
  local _, _, store = M.app(system, cfg, "sqlite", function() end)
  if store and store.close then store:close() end
  store = nil
  collectgarbage()
  local host, port = M.parse_listen(cfg.listen or "127.0.0.1:8443")
  -- first a plain socket (no SO_REUSEPORT): a port another process holds is refused here,
  -- even one that serves with --workers (SO_REUSEPORT sockets of one user would share it)
  local probe, bound = core.listen_socket(host, port)
  if not probe then error("serve: " .. bound, 0) end
  core.close_fd(probe)
  local fds = {}
  for i = 1, n do
    local fd, got = core.listen_socket(host, bound, true)
    if not fd then
      for _, f in ipairs(fds) do core.close_fd(f) end
      error("serve: " .. got, 0)
    end
    fds[i], bound = fd, got
  end
  core.catch_signals { "INT", "TERM" }
  local slots, born, last_fork = {}, {}, {}
  local function spawn(i)
    local wait = 1 - (http.clock() - (last_fork[i] or -1))
    if wait > 0 then os.execute("sleep " .. ("%.2f"):format(wait)) end
    last_fork[i] = http.clock()
    local pid = core.fork()
    if pid == 0 then
      for j, f in ipairs(fds) do if j ~= i then core.close_fd(f) end end
      worker(system, cfg, fds[i])
    end
    slots[pid], born[i] = i, pid
  end
  for i = 1, n do spawn(i) end
  io.stderr:write(("payhsm %s listening on %s://%s:%d with %d workers\n"):format(system, cfg.tls and "https" or "http",
    host, bound, n))
  io.stderr:flush()
  local sig, failed
  while not sig do
    local pid, how, code = core.wait_child(1000)
    sig = core.caught_signal()
    if pid and slots[pid] then
      local i = slots[pid]
      slots[pid] = nil
      io.stderr:write(("%s payhsm %s worker %d ended (%s %s)%s\n"):format(stamp(), system, pid, how, tostring(code),
        (how == "exit" and code == 3) and "" or (sig and "" or "; starting another")))
      io.stderr:flush()
      if how == "exit" and code == 3 then
        failed, sig = true, "TERM"
      elseif not sig then
        spawn(i)
      end
    end
  end
  for pid in pairs(slots) do core.kill(pid, "TERM") end
  local deadline = http.clock() + 30
  while next(slots) do
    local pid = core.wait_child(100)
    if pid then slots[pid] = nil end
    core.caught_signal()
    if http.clock() > deadline then
      for p in pairs(slots) do core.kill(p, "KILL") end
      deadline = math.huge
    end
  end
  for _, f in ipairs(fds) do core.close_fd(f) end
  if failed then error("serve: a worker could not start (its reason is logged above)", 0) end
  io.stderr:write(("%s payhsm %s stopped on SIG%s (%d workers)\n"):format(stamp(), system, sig, n))
  io.stderr:flush()
end

--- Serves until SIGINT or SIGTERM: then finishes the request in hand, stops listening,
-- closes the store, logs a line saying so and returns (bin/payhsm then exits 0).
-- opts.workers = N: N processes serve the one port (docs/servers.md, "Several processes"); the store must
-- be one they share (sqlite or redis).
function M.serve(system, config_path, opts)
  util.checkfields(opts, "server.serve", { "workers" })
  local cfg = M.load_config(config_path)
  local n = opts and opts.workers
  if n then
    M.system(system)
    return supervise(system, cfg, n)
  end
  local srv, app, store = M.start(system, cfg, { default_store = "sqlite" })
  core.catch_signals { "INT", "TERM" }
  io.stderr:write(("payhsm %s listening on %s://%s:%d\n"):format(system, cfg.tls and "https" or "http",
    (M.parse_listen(cfg.listen or "127.0.0.1:8443")), srv:port()))
  io.stderr:flush()
  local sig = loop(cfg, srv, app, store)
  io.stderr:write(("%s payhsm %s stopped on SIG%s\n"):format(stamp(), system, sig))
  io.stderr:flush()
end

return M
