# One helper per kind of build product; warnings are probed flags.
include(CheckCCompilerFlag)

set(WEFT_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2 -Wwrite-strings)
set(WEFT_C_FLAGS "")
foreach(flag ${WEFT_WARNINGS})
  string(MAKE_C_IDENTIFIER "HAVE_${flag}" var)
  check_c_compiler_flag(${flag} ${var})
  if(${var})
    list(APPEND WEFT_C_FLAGS ${flag})
  endif()
endforeach()
if(WEFT_WERROR)
  list(APPEND WEFT_C_FLAGS -Werror)
endif()
if(WEFT_FUZZ)
  # Coverage for libFuzzer in every library the fuzzers link.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(WEFT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# weft_library(NAME SOURCES ... [LIBS ...]): a static module library.
function(weft_library name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${WEFT_C_FLAGS})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${A_LIBS})
endfunction()

# weft_executable(NAME SOURCES ... [LIBS ...]): a binary in build/bin.
function(weft_executable name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${WEFT_C_FLAGS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${A_LIBS})
endfunction()

# weft_test(NAME SOURCES ... [LIBS ...] [TIMEOUT s] [LABELS ...]):
# a Criterion test binary registered with ctest.
function(weft_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${WEFT_C_FLAGS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${A_LIBS} PkgConfig::CRITERION)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/tests)
  # -j1: Criterion forks per test; keep the 2-core machine from thrashing.
  add_test(NAME ${name} COMMAND ${name} --jobs 1 --timeout ${A_TIMEOUT})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${A_TIMEOUT}
                       ENVIRONMENT "WEFT_SRC=${CMAKE_SOURCE_DIR};WEFT_BIN=${CMAKE_BINARY_DIR}/bin")
  if(A_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${A_LABELS}")
  endif()
endfunction()

# weft_fuzzer(NAME SOURCES ... [LIBS ...]): a libFuzzer target (WEFT_FUZZ).
function(weft_fuzzer name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${WEFT_C_FLAGS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${A_LIBS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/fuzz)
endfunction()
