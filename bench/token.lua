-- The client-credentials grant, as MSAL sends it: a form POST to /{tenant}/oauth2/v2.0/token.
dofile("report.lua")

wrk.method = "POST"
wrk.body = os.getenv("BENCH_TOKEN_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
