--- Several clean-ups per test. busted keeps only the last finally() of a test, so a second
-- finally() silently drops the first (a redis-server or lighttpd left running). Inside an
-- it():  local later = require("spec.support.defer")(finally)  then later(fn) for each
-- clean-up; they run at the end of the test, last registered first, each under pcall.
-- finally is passed in: busted defines it in the test's own environment, not in _G.
return function(finally)
  local undo = {}
  finally(function()
    for i = #undo, 1, -1 do pcall(undo[i]) end
  end)
  return function(fn) undo[#undo + 1] = fn end
end
