# Embeds OpenCL C sources into a generated C file as byte arrays, with plain
# CMake: no Python at build time and no string-literal length limits.
#
# clattn_embed_kernels(OUTPUT source...) adds a custom command that writes
# OUTPUT from the sources whenever one of them changes. The generated file
# defines `const struct clattn__kernel_source clattn__kernel_sources[]`, ended
# by an entry whose name is NULL (see host/program.h).

set(CLATTN_EMBED_SCRIPT "${CMAKE_CURRENT_LIST_FILE}")

function(clattn_embed_kernels output)
  set(inputs "")
  foreach(src IN LISTS ARGN)
    list(APPEND inputs "${CMAKE_CURRENT_SOURCE_DIR}/${src}")
  endforeach()
  string(REPLACE ";" "|" joined "${inputs}")
  add_custom_command(OUTPUT "${output}"
    COMMAND ${CMAKE_COMMAND} "-DCLATTN_EMBED_OUTPUT=${output}"
            "-DCLATTN_EMBED_INPUTS=${joined}" -P "${CLATTN_EMBED_SCRIPT}"
    DEPENDS ${inputs} "${CLATTN_EMBED_SCRIPT}"
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)
endfunction()

# clattn_embed_file(OUTPUT SYMBOL source) embeds one file as
# `const unsigned char SYMBOL[]` (NUL-terminated) and `const size_t
# SYMBOL_size` (its length without the NUL), for programs outside the library.
function(clattn_embed_file output symbol src)
  set(input "${CMAKE_CURRENT_SOURCE_DIR}/${src}")
  add_custom_command(OUTPUT "${output}"
    COMMAND ${CMAKE_COMMAND} "-DCLATTN_EMBED_OUTPUT=${output}"
            "-DCLATTN_EMBED_INPUTS=${input}" "-DCLATTN_EMBED_SYMBOL=${symbol}"
            -P "${CLATTN_EMBED_SCRIPT}"
    DEPENDS "${input}" "${CLATTN_EMBED_SCRIPT}"
    COMMENT "Embedding ${src}"
    VERBATIM)
endfunction()

# Bytes of a file as a C initialiser, 16 to a line.
function(clattn_embed_bytes path out_bytes out_size)
  file(READ "${path}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR nbytes "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
  set(${out_bytes} "${bytes}" PARENT_SCOPE)
  set(${out_size} "${nbytes}" PARENT_SCOPE)
endfunction()

# Script mode, one file under a symbol.
if(CMAKE_SCRIPT_MODE_FILE AND DEFINED CLATTN_EMBED_SYMBOL)
  clattn_embed_bytes("${CLATTN_EMBED_INPUTS}" bytes nbytes)
  get_filename_component(name "${CLATTN_EMBED_INPUTS}" NAME)
  set(s "${CLATTN_EMBED_SYMBOL}")
  file(WRITE "${CLATTN_EMBED_OUTPUT}.tmp"
    "/* Generated from ${name} by cmake/EmbedKernels.cmake. Do not edit. */\n"
    "#include <stddef.h>\n\n"
    "extern const unsigned char ${s}[];\n"
    "extern const size_t ${s}_size;\n"
    "const unsigned char ${s}[] = {\n${bytes}0x00};\n"
    "const size_t ${s}_size = ${nbytes};\n")
  file(RENAME "${CLATTN_EMBED_OUTPUT}.tmp" "${CLATTN_EMBED_OUTPUT}")
# Script mode: the library's table of kernel files.
elseif(CMAKE_SCRIPT_MODE_FILE AND DEFINED CLATTN_EMBED_OUTPUT)
  string(REPLACE "|" ";" inputs "${CLATTN_EMBED_INPUTS}")
  set(body "/* Generated from the cl/ kernels by cmake/EmbedKernels.cmake. Do not edit. */\n")
  string(APPEND body "#include \"program.h\"\n\n")
  set(table "")
  set(i 0)
  foreach(path IN LISTS inputs)
    get_filename_component(name "${path}" NAME)
    clattn_embed_bytes("${path}" bytes nbytes)
    string(APPEND body "static const char clattn__src_${i}[] = {\n${bytes}0x00};\n\n")
    string(APPEND table "  {\"${name}\", clattn__src_${i}, ${nbytes}},\n")
    math(EXPR i "${i} + 1")
  endforeach()
  string(APPEND body "const struct clattn__kernel_source clattn__kernel_sources[] = {\n")
  string(APPEND body "${table}  {0, 0, 0}};\n")
  file(WRITE "${CLATTN_EMBED_OUTPUT}.tmp" "${body}")
  file(RENAME "${CLATTN_EMBED_OUTPUT}.tmp" "${CLATTN_EMBED_OUTPUT}")
endif()
