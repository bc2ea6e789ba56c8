# Installation layout and the Debian package (SPEC §10). Included from the
# top-level CMakeLists.txt; `cmake --build build --target package` writes
# build/orchestrator_<version>_<arch>.deb.
#
# The package installs to /usr (binary), /lib/systemd/system (unit),
# /etc/orchestrator (config, a conffile) and /var/lib/orchestrator (state).

# `cmake --install` puts the binary where the unit's ExecStart expects it
# (/usr/bin) in fresh build trees; an explicit -DCMAKE_INSTALL_PREFIX wins.
# The package always uses /usr (CPACK_INSTALL_PREFIX below).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()

set(ORCH_PKG_DIR ${CMAKE_CURRENT_LIST_DIR})
if(ORCH_TEST_HOOKS)
  message(WARNING "ORCH_TEST_HOOKS is ON: this build has test kill points; do not ship its package")
endif()

install(TARGETS orchestrator orchestrator-exec RUNTIME DESTINATION bin)
# The remaining paths are fixed by the Filesystem Hierarchy Standard, not the prefix.
install(FILES ${ORCH_PKG_DIR}/systemd/orchestrator.service DESTINATION /lib/systemd/system)
install(FILES ${ORCH_PKG_DIR}/orchestrator.toml DESTINATION /etc/orchestrator)
install(DIRECTORY DESTINATION /var/lib/orchestrator
        DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME orchestrator)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "orchestrator developers")
set(CPACK_PACKAGE_CONTACT "orchestrator maintainers <orchestrator@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "durable job queue and process supervisor")
set(CPACK_PACKAGE_DESCRIPTION
    "orchestrator runs queued commands under a supervisor that survives its own\n"
    "restarts: jobs are stored in SQLite, started with pidfds, limited by a\n"
    "concurrency cap and per-key serialisation, retried with backoff, and\n"
    "managed over a small HTTP API and the orchestrator command line.")
string(JOIN "" CPACK_PACKAGE_DESCRIPTION ${CPACK_PACKAGE_DESCRIPTION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# Absolute destinations (/etc, /lib, /var) are staged under the package
# directory instead of being written to this machine.
set(CPACK_SET_DESTDIR ON)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.org/orchestrator")
# Depends: from the binary's shared libraries (needs dpkg-shlibdeps and file).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The maintainer scripts use useradd/groupadd (passwd) and getent (libc-bin).
# libcurl4 is dlopen()ed by the client subcommands and libpq5 by the
# PostgreSQL store, so shlibdeps cannot see them.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd, libcurl4, libpq5")

# /etc/orchestrator/orchestrator.toml is a conffile: upgrades keep local edits.
set(ORCH_CONFFILES ${CMAKE_BINARY_DIR}/packaging/conffiles)
file(WRITE ${ORCH_CONFFILES} "/etc/orchestrator/orchestrator.toml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${ORCH_CONFFILES}
    ${ORCH_PKG_DIR}/debian/postinst
    ${ORCH_PKG_DIR}/debian/prerm
    ${ORCH_PKG_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
