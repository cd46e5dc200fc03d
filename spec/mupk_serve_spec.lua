-- `bin/payhsm serve mupk` as its own process: the merchant over HTTP (keep-alive client),
-- and the expiry webhook delivered by the server's own tick loop to a real listener in
-- this process (Commerce Hub's multi-use public keys, "three notifications via
-- webhook"). The key lifetime is set just over 47 hours so the first notification is due
-- at once on the wall clock.
local cjson = require "cjson"
local http = require "payhsm.http"
local serve = require "spec.support.serve"
local merchant_mod = require "payhsm.mupk.merchant"

describe("payhsm serve mupk", function()
  it("generates, takes a store-and-forward transaction and posts the 47-hour webhook", function()
    local got = {}
    local listener = http.new { host = "127.0.0.1", port = 0, quiet = true, handler = function(req)
      got[#got + 1] = cjson.decode(req.body)
      return { status = 204, body = "" }
    end }
    local srv = serve.start("mupk", ([[{
      listen = "127.0.0.1:0",
      basic_auth = { shop = "s3cret" },
      store = { backend = "memory" },
      storage_key = { algorithm = "AES_256", hex = %q },
      key_lifetime = 47 * 3600 + 3,
      webhook_url = "http://127.0.0.1:%d/hooks",
      tick_interval = 1,
    }]]):format(("3D"):rep(32), listener:port()))
    finally(function() srv.stop() srv.cleanup() listener:close() end)
    local m = merchant_mod.new { merchant_id = "123456789012345", clock = os.time, auto_rotate = false,
      user = "shop", password = "s3cret",
      service = merchant_mod.http_service { host = "127.0.0.1", port = srv.port, timeout = 5 } }
    -- without credentials: 401 and Commerce Hub's error body, nothing generated
    local anon = merchant_mod.new { merchant_id = "123456789012345", clock = os.time, auto_rotate = false,
      service = merchant_mod.http_service { host = "127.0.0.1", port = srv.port, timeout = 5 } }
    local none, doc = anon:request_key()
    assert.is_nil(none)
    assert.equal("401", doc.error[1].code)
    local k = assert(m:request_key())
    assert.equal(2048, k.public:bits())
    -- GET /security/v1/keys/{keyId}?merchantId= through payhsm.http (arguments as a table)
    local c = require("payhsm.http_client").new { host = "127.0.0.1", port = srv.port, timeout = 5 }
    local path = "/security/v1/keys/" .. k.keyId
    local auth = { authorization = "Basic " .. require("payhsm.util").b64encode("shop:s3cret") }
    assert.equal(200, assert(c:request { method = "GET", path = path .. "?merchantId=123456789012345", headers = auth }).status)
    assert.equal(404, assert(c:request { method = "GET", path = path .. "?merchantId=999999999999999", headers = auth }).status)
    assert.equal(200, assert(c:request { method = "GET", path = path, headers = auth }).status)
    assert.equal(401, assert(c:request { method = "GET", path = path }).status)
    c:close()
    assert(m:capture { amount = 12.00, currency = "EUR", pan = "4005550000000019", exp_month = "01", exp_year = "2031" })
    local res = m:forward()
    assert.equal(201, res[1].status)
    assert.equal("CAPTURED", res[1].body.gatewayResponse.transactionState)
    local deadline = os.time() + 8
    while #got == 0 and os.time() < deadline do listener:run_once(50) end
    assert.equal(1, #got)
    assert.equal(k.keyId, got[1].asymmetricKeyDetails.keyId)
    assert.equal(47, got[1].notification.hoursBeforeExpiry)
    for _ = 1, 30 do listener:run_once(50) end
    assert.equal(1, #got) -- at most once
    local log = serve.read(srv.log)
    assert.matches("POST /security/v1/keys/generate 201", log)
    assert.matches("POST /security/v1/transactions 201", log)
    assert.is_nil(log:find("4005550000000019", 1, true))
  end)
end)
