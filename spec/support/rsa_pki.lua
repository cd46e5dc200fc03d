--- An RSA PKI for TR-34 exchanges, made with the openssl command line in a fresh
-- temporary directory: a CA, a KDH (digitalSignature) and a KRD (keyEncipherment) under
-- it, and a stranger CA with its own KDH ("rogue") and KRD ("rogue_krd").
--   local P = require("spec.support.rsa_pki").make()  -- P.ca_cert, P.kdh_key, ... (PEM)
--   P.remove()
local M = {}

local function sh(cmd)
  local ok = os.execute("env -u LD_PRELOAD " .. cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "command failed: " .. cmd)
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  local function ca(name)
    sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=%s' -keyout %s/%s.key -out %s/%s.pem")
      :format(name, dir, name, dir, name))
  end
  local function leaf(name, issuer, ku)
    sh(("openssl req -newkey rsa:2048 -nodes -subj '/O=TR34 Test/CN=%s' -keyout %s/%s.key -out %s/%s.csr")
      :format(name, dir, name, dir, name))
    local f = assert(io.open(dir .. "/" .. name .. ".ext", "w"))
    f:write("keyUsage=" .. ku .. "\n")
    f:close()
    sh(("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key -CAcreateserial -days 10 -extfile %s/%s.ext"
      .. " -out %s/%s.pem"):format(dir, name, dir, issuer, dir, issuer, dir, name, dir, name))
  end
  ca("ca")
  ca("stranger")
  leaf("kdh", "ca", "digitalSignature")
  leaf("krd", "ca", "keyEncipherment")
  leaf("rogue", "stranger", "digitalSignature")
  leaf("rogue_krd", "stranger", "keyEncipherment")
  local P = { dir = dir }
  for _, n in ipairs { "ca", "stranger", "kdh", "krd", "rogue", "rogue_krd" } do
    P[n .. "_cert"] = read(dir .. "/" .. n .. ".pem")
    P[n .. "_key"] = read(dir .. "/" .. n .. ".key")
  end
  function P.remove() os.execute("rm -rf " .. dir) end
  return P
end

return M
