-- docs/API-reference.md is generated from the source comments (tools/apidoc.lua) and current.
describe("docs/API-reference.md", function()
  it("is what tools/apidoc.lua generates from the sources", function()
    local p = io.popen("env -u LD_PRELOAD lua5.4 tools/apidoc.lua")
    local generated = p:read("*a")
    p:close()
    local f = assert(io.open("docs/API-reference.md"))
    local stored = f:read("*a")
    f:close()
    assert.equal(generated, stored, "run: make docs")
    -- it covers the core areas and the simulators
    for _, needle in ipairs { "key.derive(", "core.tr31.unwrap(", "core.emv.generate_arqc(", "payhsm.gateway`",
                              "payhsm.store.sqlite`", "redis.connect(" } do
      assert.is_truthy(stored:find(needle, 1, true), needle)
    end
  end)
end)
