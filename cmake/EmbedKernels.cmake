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

# Script mode: do the embedding.
if(CMAKE_SCRIPT_MODE_FILE AND DEFINED CLATTN_EMBED_OUTPUT)
  string(REPLACE "|" ";" inputs "${CLATTN_EMBED_INPUTS}")
  set(body "/* Generated from the cl/ kernels by cmake/EmbedKernels.cmake. Do not edit. */\n")
  string(APPEND body "#include \"program.h\"\n\n")
  set(table "")
  set(i 0)
  foreach(path IN LISTS inputs)
    get_filename_component(name "${path}" NAME)
    file(READ "${path}" hex HEX)
    string(LENGTH "${hex}" hexlen)
    math(EXPR nbytes "${hexlen} / 2")
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
    # Break the initialiser into lines of 16 bytes.
    string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
    string(APPEND body "static const char clattn__src_${i}[] = {\n${bytes}0x00};\n\n")
    string(APPEND table "  {\"${name}\", clattn__src_${i}, ${nbytes}},\n")
    math(EXPR i "${i} + 1")
  endforeach()
  string(APPEND body "const struct clattn__kernel_source clattn__kernel_sources[] = {\n")
  string(APPEND body "${table}  {0, 0, 0}};\n")
  file(WRITE "${CLATTN_EMBED_OUTPUT}.tmp" "${body}")
  file(RENAME "${CLATTN_EMBED_OUTPUT}.tmp" "${CLATTN_EMBED_OUTPUT}")
endif()
