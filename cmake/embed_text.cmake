# Writes a C++ source defining `const std::string_view NAME` holding the text of INPUT, so a file
# kept under src/ as itself (the dashboard's HTML) is compiled into the binary.
# cmake -DINPUT=... -DOUTPUT=... -DNAME=ns::name -DHEADER=server/dashboard.hpp -P embed_text.cmake
file(READ "${INPUT}" text)
set(delim "gh_embed")
string(FIND "${text}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )${delim}\"")
endif()
string(REGEX REPLACE "::[^:]+$" "" ns "${NAME}")
string(REGEX REPLACE "^.*::" "" var "${NAME}")
# A raw string literal per 16 KiB piece stays under every compiler's literal limit.
set(pieces "")
string(LENGTH "${text}" len)
set(pos 0)
while(pos LESS len)
  string(SUBSTRING "${text}" ${pos} 16384 piece)
  string(APPEND pieces "R\"${delim}(${piece})${delim}\"\n")
  math(EXPR pos "${pos} + 16384")
endwhile()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake: edit that file, not this one.\n"
  "#include \"${HEADER}\"\n\nnamespace ${ns} {\n\nconst std::string_view ${var} =\n${pieces};\n\n}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
