// swift-tools-version:6.0
// The mailcloak package: one target per component, so that this file shows
// which component links which C library from Debian.
import PackageDescription

let package = Package(
    name: "mailcloak",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mailcloak", targets: ["mailcloak"]),
        .executable(name: "mailcloakctl", targets: ["mailcloakctl"]),
        .executable(name: "mailcloak-bench", targets: ["mailcloak-bench"]),
        .executable(name: "baseline-responder", targets: ["baseline-responder"]),
    ],
    targets: [
        // C libraries from Debian: a module map and a shim header each.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CYAML", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CArgon2", providers: [.apt(["libargon2-dev"])]),
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // hiredis: no pkgConfig, because its Cflags carry -D_FILE_OFFSET_BITS=64, which SwiftPM drops with a warning.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // What Swift cannot call directly: epoll, eventfd, accept4, variadic curl setters.
        .target(name: "CShim", dependencies: ["CCurl", "COpenSSL"]),

        // A lock on a pthread mutex, which the thread sanitizer follows; it cannot follow Synchronization.Mutex.
        .target(name: "Locking"),
        .target(name: "Log", dependencies: ["Locking"]),
        .target(name: "Config", dependencies: ["CYAML", "Log"]),
        .target(name: "Model"),
        .target(name: "PolicyProtocol"),
        .target(name: "Socketmap"),
        .target(name: "Reactor", dependencies: ["Locking", "CShim", "Log", "Config"]),
        .target(name: "Store", dependencies: ["Locking", "CLibPQ", "Model", "Config", "Log"]),
        .target(name: "Metrics", dependencies: ["Locking"]),
        .target(name: "RedisCache", dependencies: ["CHiredis", "Model", "Config", "Log"]),
        .target(
            name: "IdentityProvider",
            dependencies: ["Locking", "CCurl", "CShim", "Model", "Config", "Log", "RedisCache"]
        ),
        .target(name: "Resolver", dependencies: ["Model", "Config", "Log", "PolicyProtocol", "Socketmap"]),
        .target(
            name: "Server",
            dependencies: [
                "Locking", "Reactor", "PolicyProtocol", "Socketmap", "Resolver", "Store", "IdentityProvider",
                "Config", "Log", "Model", "Metrics",
            ]
        ),
        .executableTarget(name: "mailcloak", dependencies: ["Server", "Config", "Log", "Store", "IdentityProvider"]),
        .executableTarget(
            name: "mailcloakctl",
            dependencies: ["Store", "Config", "Log", "Model", "CArgon2", "CSQLite", "RedisCache"]
        ),
        .executableTarget(name: "mailcloak-bench", dependencies: ["Locking", "CShim", "COpenSSL"]),
        .executableTarget(
            name: "baseline-responder",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),

        .testTarget(name: "LockingTests", dependencies: ["Locking"]),
        .testTarget(name: "LogTests", dependencies: ["Locking", "Log"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config"]),
        .testTarget(name: "ModelTests", dependencies: ["Model"]),
        .testTarget(name: "PolicyProtocolTests", dependencies: ["PolicyProtocol", "TestSupport"]),
        .testTarget(name: "SocketmapTests", dependencies: ["Socketmap", "TestSupport"]),
        .testTarget(name: "ReactorTests", dependencies: ["Locking", "Reactor", "CShim"]),
        .testTarget(name: "TLSTests", dependencies: ["Reactor", "Config", "Log", "CShim", "COpenSSL"]),
        .testTarget(name: "ResolverTests", dependencies: ["Resolver", "Model", "Config", "PolicyProtocol", "Socketmap"]),
        // Helpers shared by test targets: a throwaway redis-server, byte-stream chunking.
        .target(name: "TestSupport", dependencies: ["RedisCache"], path: "Tests/TestSupport"),
        .testTarget(
            name: "RedisCacheTests", dependencies: ["Locking", "RedisCache", "Model", "Config", "Log", "TestSupport"]
        ),
        .testTarget(name: "MetricsTests", dependencies: ["Metrics"]),
        .testTarget(
            name: "IdentityProviderTests",
            dependencies: [
                "IdentityProvider", "Locking", "Model", "Config", "Log", "RedisCache", "Resolver", "PolicyProtocol",
                "TestSupport",
            ]
        ),
        // Tests against real services: PostgreSQL, the Keycloak development
        // directory, Postfix. scripts/test.sh starts what they need.
        .testTarget(name: "StoreIntegrationTests", dependencies: ["Locking", "Store", "Config", "Model", "Log"]),
        .testTarget(
            name: "EndToEndTests", dependencies: ["Locking", "Config", "Model", "Log", "RedisCache", "TestSupport"],
            exclude: ["README.md"]
        ),
    ]
)
