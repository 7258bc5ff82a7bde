-- GET one URL; the Authorization header comes from wrk -H.
dofile("report.lua")
