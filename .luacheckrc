-- luacheck configuration for lua/ (the module), tests/nginx/ and examples/ (nginx Lua).
std = "ngx_lua"
max_line_length = 100
