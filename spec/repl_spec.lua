-- bin/payhsm repl driven through a pseudo-terminal (tmux), as a person at a terminal
-- would: with rlwrap (Tab completion of hsm.* names) and without it (PAYHSM_NO_RLWRAP).
-- An error prints as one plain line, Ctrl-C drops the current input (also within a
-- multi-line one, and a second Ctrl-C does not kill the session) and keeps the session's
-- variables, help lists the functions, `= expr` prints.
local interp = require "spec.support.interp"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- A tmux server of our own (its own socket), one session running the REPL.
local Term = {}
Term.__index = Term

local function term(env)
  local sock = ("payhsm-repl-%d-%d"):format(os.time(), math.random(1, 1e6))
  local home = os.tmpname()
  os.remove(home)
  os.execute("mkdir -p " .. home)
  local cmd = ("cd %s && export %s HOME=%s %s; exec bin/payhsm repl"):format(q(os.getenv("PWD") or "."),
    interp.env, home, env or "")
  local t = setmetatable({ sock = sock, home = home }, Term)
  assert(t:tmux("new-session -d -s r -x 160 -y 50 " .. q(cmd)))
  return t
end

function Term:tmux(args)
  return os.execute(("env -u LD_PRELOAD tmux -L %s -f /dev/null %s >/dev/null 2>&1"):format(self.sock, args))
end

function Term:screen()
  local p = io.popen(("env -u LD_PRELOAD tmux -L %s capture-pane -p -S -200 -t r 2>/dev/null"):format(self.sock))
  local s = p:read("*a")
  p:close()
  return s
end

-- Waits until the screen matches pattern (plain find), up to 15 s; returns the screen.
function Term:wait(text, n)
  local screen
  for _ = 1, 150 do
    screen = self:screen()
    local count, from = 0, 1
    while true do
      local a, b = screen:find(text, from, true)
      if not a then break end
      count, from = count + 1, b + 1
    end
    if count >= (n or 1) then return screen end
    os.execute("sleep 0.1")
  end
  error(("timed out waiting for %q; screen:\n%s"):format(text, screen))
end

function Term:send(...)
  local keys = {}
  for i = 1, select("#", ...) do keys[i] = q((select(i, ...))) end
  assert(self:tmux("send-keys -t r " .. table.concat(keys, " ")))
end

function Term:close()
  self:tmux("kill-server")
  os.execute("rm -rf " .. self.home)
end

local function tour(t)
  t:wait("hsm>")
  -- an error prints plainly: one line, no quoted string, no traceback
  t:send('hsm.key.generate("AES_265")', "Enter")
  local s = t:wait("error: unknown key algorithm 'AES_265' (expected one of: DES, TDES_2KEY")
  assert.falsy(s:find("stack traceback", 1, true))
  assert.falsy(s:find("cli.lua", 1, true))
  assert.falsy(s:find('"bad argument', 1, true))
  -- ... and its traceback on request
  t:send("traceback", "Enter")
  t:wait("stack traceback:")
  -- Ctrl-C in the middle of a multi-line input drops it; the session and its variables stay
  t:send("k = hsm.key.import('TDES_2KEY', ('0123456789ABCDEFFEDCBA9876543210'))", "Enter")
  t:send("for i = 1, 3 do", "Enter")
  t:wait("...>")
  t:send("C-c")
  t:wait("hsm>", 5)
  t:send("C-c") -- a second one too
  t:wait("hsm>", 6)
  t:send("= k:kcv()", "Enter")
  t:wait('"08D7B4"')
  -- Ctrl-C stops a running computation
  t:send("while true do end", "Enter")
  os.execute("sleep 0.3")
  t:send("C-c")
  t:wait("error: interrupted")
  t:send("= k.algorithm", "Enter")
  t:wait('"TDES_2KEY"')
  -- help lists the areas, help(hsm.pin) the functions with their signatures
  t:send("help", "Enter")
  t:wait("as2805, card, cipher, dukpt, ec, emv, envelope, key, mac, pin")
  t:send("help(hsm.pin)", "Enter")
  t:wait("pin.decrypt(key, fmt, block_hex, pan) -> pin")
end

describe("bin/payhsm repl in a terminal", function()
  setup(function()
    assert(os.execute("command -v tmux >/dev/null"), "tmux is not installed (make deps installs it)")
  end)

  it("with rlwrap: plain errors, Ctrl-C keeps the session, help, and Tab completes hsm.pi to hsm.pin", function()
    if not os.execute("command -v rlwrap >/dev/null") then pending("rlwrap is not installed") return end
    local t = term()
    finally(function() t:close() end)
    tour(t)
    t:send("C-u", "x = hsm.pi", "Tab")
    t:wait("x = hsm.pin")
    t:send("C-u", "= hsm.mac.gen", "Tab")
    t:wait("= hsm.mac.generate")
  end)

  it("without rlwrap: the same at a bare terminal", function()
    local t = term("PAYHSM_NO_RLWRAP=1")
    finally(function() t:close() end)
    tour(t)
    t:send("C-d")
    os.execute("sleep 0.5")
  end)

  it("the help word list is current with the source comments (make docs)", function()
    local p = io.popen(interp.lua .. " tools/apidoc.lua lua")
    local want = p:read("*a")
    p:close()
    local f = assert(io.open("lua/payhsm/apidoc.lua"))
    local have = f:read("*a")
    f:close()
    assert.equal(want, have)
  end)

  it("piped input: = expr, help(fn), and errors on one line", function()
    local p = io.popen("export " .. interp.env .. "; printf '= 1 + 1\\nhelp(hsm.mac.generate)\\nerror({})\\n"
      .. "hsm.kcv(1)\\n' | bin/payhsm repl 2>&1")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("hsm> 2\n", 1, true), out)
    assert.truthy(out:find("mac.generate(key, algorithm, data_hex [, opts]) -> mac_hex", 1, true), out)
    assert.truthy(out:find("hsm> error: table: ", 1, true), out)
    assert.truthy(out:find("error: payhsm.Key expected, got number", 1, true), out)
  end)
end)
