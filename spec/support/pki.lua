--- Test PKI made with the openssl command line: a CA, a server certificate for
-- 127.0.0.1/localhost, a client certificate from the CA, and a stranger CA with its own
-- client certificate. Everything lives in a fresh temporary directory.
local M = {}

local function sh(cmd)
  local ok = os.execute("env -u LD_PRELOAD " .. cmd .. " >/dev/null 2>&1")
  assert(ok, "command failed: " .. cmd)
end

function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  local function ca(name)
    sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=%s' "
      .. "-keyout %s/%s.key -out %s/%s.pem"):format(name, dir, name, dir, name))
  end
  local function leaf(name, issuer, ext)
    sh(("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=%s' -keyout %s/%s.key "
      .. "-out %s/%s.csr"):format(name, dir, name, dir, name))
    local extfile = ("%s/%s.ext"):format(dir, name)
    local f = assert(io.open(extfile, "w"))
    f:write(ext, "\n")
    f:close()
    sh(("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key -CAcreateserial -days 2 "
      .. "-extfile %s -out %s/%s.pem"):format(dir, name, dir, issuer, dir, issuer, extfile, dir, name))
  end
  ca("ca")
  ca("stranger-ca")
  leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
  leaf("client", "ca", "extendedKeyUsage=clientAuth")
  leaf("stranger", "stranger-ca", "extendedKeyUsage=clientAuth")
  local function read(name)
    local f = assert(io.open(dir .. "/" .. name))
    local s = f:read("*a")
    f:close()
    return s
  end
  return { dir = dir, path = function(name) return dir .. "/" .. name end, read = read }
end

--- One more leaf certificate in an existing PKI (made by M.make), for a spec that needs
-- a name the standard ones do not carry: pki.path(name .. ".pem") / (name .. ".key").
-- ext is openssl x509 extension lines (e.g. "subjectAltName=DNS:other.example");
-- subject is the CN (default name); issuer defaults to "ca". The certificates M.make
-- makes are not touched.
function M.leaf(pki, name, ext, subject, issuer)
  local dir = pki.dir
  issuer = issuer or "ca"
  sh(("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=%s' -keyout %s/%s.key "
    .. "-out %s/%s.csr"):format(subject or name, dir, name, dir, name))
  local extfile = ("%s/%s.ext"):format(dir, name)
  local f = assert(io.open(extfile, "w"))
  f:write(ext or "", "\n")
  f:close()
  sh(("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key -CAcreateserial -days 2 "
    .. "-extfile %s -out %s/%s.pem"):format(dir, name, dir, issuer, dir, issuer, extfile, dir, name))
  return pki.path(name .. ".pem"), pki.path(name .. ".key")
end

function M.remove(pki)
  os.execute("rm -rf " .. pki.dir)
end

--- Runs a curl command line in the background while the server loop serves it;
-- returns curl's output and exit code.
function M.curl(srv, args)
  local out = os.tmpname()
  os.execute(("(env -u LD_PRELOAD curl -s -S %s > %s 2>&1; echo $? > %s.rc.tmp; mv %s.rc.tmp %s.rc) &")
    :format(args, out, out, out, out))
  local deadline = os.time() + 10
  local rcfile
  repeat
    srv:run_once(20)
    rcfile = io.open(out .. ".rc")
  until rcfile or os.time() > deadline
  assert(rcfile, "curl did not finish")
  local rc = tonumber(rcfile:read("*a"))
  rcfile:close()
  local f = io.open(out)
  local body = f:read("*a")
  f:close()
  os.remove(out)
  os.remove(out .. ".rc")
  return body, rc
end

return M
