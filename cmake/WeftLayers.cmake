# The arrows between modules (docs/architecture.md), checked at configure
# time: a module that includes or links one it may not fails the build.
#
#   placement, fabric, proto,  depend on nothing of ours
#   ctlplane
#   target, initiator          on placement, fabric, proto, ctlplane; never
#                              each other
#   weftctl                    on placement, fabric, proto, ctlplane (not
#                              libweft)
#   attach                     on initiator (libweft's public weft.h) only:
#                              it uses a volume as an application does
#   bench, fio, tests, fuzz: on anything
set(WEFT_LAYER_placement "")
set(WEFT_LAYER_fabric "")
set(WEFT_LAYER_proto "")
set(WEFT_LAYER_ctlplane "")
set(WEFT_LAYER_target placement fabric proto ctlplane)
set(WEFT_LAYER_initiator placement fabric proto ctlplane)
set(WEFT_LAYER_weftctl placement fabric proto ctlplane)
set(WEFT_LAYER_attach initiator)
set(WEFT_LAYER_MODULES placement fabric proto ctlplane target initiator weftctl attach)

# Which module a library target belongs to ("" if none of the checked).
function(_weft_module_of_target tgt out)
  set(m "")
  if(TARGET ${tgt})
    get_target_property(dir ${tgt} SOURCE_DIR)
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${dir})
    if(rel IN_LIST WEFT_LAYER_MODULES)
      set(m ${rel})
    endif()
  endif()
  set(${out} "${m}" PARENT_SCOPE)
endfunction()

# Includes: every "module/..." include of a module's sources must name the
# module itself or one it may depend on.
function(weft_check_includes)
  foreach(mod ${WEFT_LAYER_MODULES})
    file(GLOB_RECURSE srcs ${CMAKE_SOURCE_DIR}/${mod}/*.c
                           ${CMAKE_SOURCE_DIR}/${mod}/*.h)
    foreach(src ${srcs})
      file(STRINGS ${src} lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]")
      foreach(line ${lines})
        if(line MATCHES "include[ \t]*[\"<]([a-z_]+)/")
          set(dep ${CMAKE_MATCH_1})
          if(dep IN_LIST WEFT_LAYER_MODULES AND NOT dep STREQUAL mod AND
             NOT dep IN_LIST WEFT_LAYER_${mod})
            file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${src})
            message(FATAL_ERROR "layers: ${rel} includes ${dep}/: ${mod}/ "
              "may depend only on: ${WEFT_LAYER_${mod}} (docs/architecture.md)")
          endif()
        endif()
      endforeach()
    endforeach()
  endforeach()
endfunction()

# Links: every library a module's target links (directly) must be of the
# module itself or one it may depend on.
function(weft_check_links)
  foreach(mod ${WEFT_LAYER_MODULES})
    get_property(tgts DIRECTORY ${CMAKE_SOURCE_DIR}/${mod} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(t ${tgts})
      get_target_property(libs ${t} LINK_LIBRARIES)
      if(NOT libs)
        continue()
      endif()
      foreach(lib ${libs})
        _weft_module_of_target(${lib} dep)
        if(dep AND NOT dep STREQUAL mod AND NOT dep IN_LIST WEFT_LAYER_${mod})
          message(FATAL_ERROR "layers: ${t} (${mod}/) links ${lib} (${dep}/): "
            "${mod}/ may depend only on: ${WEFT_LAYER_${mod}} (docs/architecture.md)")
        endif()
      endforeach()
    endforeach()
  endforeach()
endfunction()
