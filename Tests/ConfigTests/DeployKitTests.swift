// Checks the deployment kit under deploy/ against mailcloak's configuration
// and against the tools that read each file. Kubernetes manifests go through
// mailcloak's own YAML reader and configuration loader, and the systemd files
// through systemd-analyze, sysusers and tmpfiles. HAProxy checks its file with
// `haproxy -c`, Postfix the node lines with postconf, postmap and a private
// instance, and Dovecot its files with doveconf. A test whose tool is not
// installed is skipped and names the tool it needs.

import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Config

@Suite(.serialized)
struct DeployKitTests {
    // MARK: - Kubernetes

    static let kubernetesFolder = "deploy/kubernetes"
    static let kubernetesManifests = [
        "configmap.yaml", "deployment.yaml", "kustomization.yaml", "poddisruptionbudget.yaml",
        "secret-credentials.yaml", "secret-tls.yaml", "service-metrics.yaml", "service.yaml",
    ]

    private func manifest(_ name: String) throws -> YAMLNode {
        try parseDeployYAML(Self.kubernetesFolder + "/" + name)
    }

    /// Loads the mailcloak.yaml text of the ConfigMap with the configuration loader.
    private func configMapConfiguration() throws -> Configuration {
        let text = try #require(try manifest("configmap.yaml").child("data", "mailcloak.yaml")?.scalarText)
        return try ConfigLoader.parse(yaml: text)
    }

    private func podSpec() throws -> YAMLNode {
        try #require(try manifest("deployment.yaml").child("spec", "template", "spec"))
    }

    private func container() throws -> YAMLNode {
        try #require(item(named: "mailcloak", in: try podSpec().child("containers")))
    }

    /// Returns the mount path of the volume that contains the Secret `secretName`.
    private func mountPath(ofSecret secretName: String) throws -> String {
        let spec = try podSpec()
        let volume = try #require(spec.child("volumes")?.items.first {
            $0.child("secret", "secretName")?.scalarText == secretName
        })
        let volumeName = try #require(volume.child("name")?.scalarText)
        let mount = try #require(item(named: volumeName, in: try container().child("volumeMounts")))
        return try #require(mount.child("mountPath")?.scalarText)
    }

    /// Returns the keys of a Secret manifest's stringData.
    private func secretKeys(_ fileName: String) throws -> [String] {
        try #require(try manifest(fileName).child("stringData")).keys
    }

    /// Returns the containerPort of the container port named `name`.
    private func containerPort(named name: String) throws -> Int {
        let port = try #require(item(named: name, in: try container().child("ports")))
        return try #require(Int(port.child("containerPort")?.scalarText ?? ""))
    }

    @Test func kubernetesFolderHoldsExpectedManifests() throws {
        let yamlFiles = try listDeployFolder(Self.kubernetesFolder).filter { $0.hasSuffix(".yaml") }
        #expect(yamlFiles == Self.kubernetesManifests)
    }

    @Test(arguments: kubernetesManifests)
    func kubernetesManifestParsesAsOneObject(_ name: String) throws {
        let root = try manifest(name)
        #expect(root.child("apiVersion")?.scalarText != nil)
        #expect(root.child("kind")?.scalarText != nil)
        if name != "kustomization.yaml" {
            #expect(root.child("metadata", "name")?.scalarText != nil)
            #expect(root.child("metadata", "labels", "app.kubernetes.io/name")?.scalarText == "mailcloak")
        }
    }

    @Test func kustomizationListsEveryManifestButSecrets() throws {
        let resources = try manifest("kustomization.yaml").child("resources")?.items.compactMap(\.scalarText) ?? []
        let expected = Self.kubernetesManifests.filter { $0 != "kustomization.yaml" && !$0.hasPrefix("secret-") }
        #expect(resources.sorted() == expected)
    }

    @Test func configMapConfigurationLoads() throws {
        let configuration = try configMapConfiguration()
        #expect(configuration.listeners.count == 1)
        #expect(configuration.listeners.first?.tls != nil)
        #expect(configuration.listeners.first?.acl?.isEmpty == false)
        #expect(configuration.metrics.enabled)
    }

    @Test func configMapCertificatesLieInTLSSecret() throws {
        let tls = try #require(try configMapConfiguration().listeners.first?.tls)
        let mount = try mountPath(ofSecret: "mailcloak-tls")
        let keys = try secretKeys("secret-tls.yaml")
        #expect(tls.files.count == 5)
        #expect(tls.sessionTicketKeys != nil)
        for file in tls.files {
            #expect(file.hasPrefix(mount + "/"), "\(file) lies outside \(mount)")
            #expect(keys.contains(String(file.dropFirst(mount.count + 1))), "\(file) is no key of mailcloak-tls")
        }
    }

    @Test func configMapSecretFilesLieInCredentialsSecret() throws {
        let configuration = try configMapConfiguration()
        let mount = try mountPath(ofSecret: "mailcloak-credentials")
        let keys = try secretKeys("secret-credentials.yaml")
        let serviceFile = try #require(
            item(named: "PGSERVICEFILE", in: try container().child("env"))?.child("value")?.scalarText)
        let files = [
            try #require(configuration.identity.keycloak.clientSecretFile),
            try #require(configuration.identity.redis.passwordFile),
            serviceFile,
        ]
        for file in files {
            #expect(file.hasPrefix(mount + "/"), "\(file) lies outside \(mount)")
            #expect(keys.contains(String(file.dropFirst(mount.count + 1))), "\(file) is no key of mailcloak-credentials")
        }
        #expect(configuration.database.url == "service=mailcloak")
        #expect(configuration.identity.keycloak.clientSecret == "")
    }

    @Test func secretVolumesAreWholeAndPrivate() throws {
        let spec = try podSpec()
        let secretVolumes = spec.child("volumes")?.items.filter { $0.child("secret") != nil } ?? []
        #expect(secretVolumes.count == 2)
        for volume in secretVolumes {
            #expect(volume.child("secret", "defaultMode")?.scalarText == "0440")
        }
        for mount in try container().child("volumeMounts")?.items ?? [] {
            #expect(mount.child("subPath") == nil, "subPath mounts never receive Secret updates")
            #expect(mount.child("readOnly")?.scalarText == "true")
        }
    }

    @Test func probesUseMetricsListener() throws {
        let configuration = try configMapConfiguration()
        let container = try container()
        #expect(try containerPort(named: "metrics") == Int(configuration.metrics.port))
        #expect(configuration.metrics.host == "0.0.0.0")
        #expect(container.child("readinessProbe", "httpGet", "path")?.scalarText == "/readyz")
        #expect(container.child("readinessProbe", "httpGet", "port")?.scalarText == "metrics")
        #expect(container.child("livenessProbe", "httpGet", "path")?.scalarText == "/healthz")
        #expect(container.child("livenessProbe", "httpGet", "port")?.scalarText == "metrics")
    }

    @Test func containerPortMatchesListener() throws {
        let listener = try #require(try configMapConfiguration().listeners.first)
        guard case .tcp(let host, let port) = listener.address else {
            Issue.record("listener \(listener.name) is not TCP: \(listener.address)")
            return
        }
        #expect(host == "0.0.0.0")
        #expect(try containerPort(named: "mailcloak-tls") == Int(port))
    }

    @Test(arguments: ["service.yaml": "mailcloak-tls", "service-metrics.yaml": "metrics"])
    func serviceTargetsNamedContainerPort(_ fileName: String, _ portName: String) throws {
        let service = try manifest(fileName)
        let ports = service.child("spec", "ports")?.items ?? []
        #expect(ports.count == 1)
        #expect(ports.first?.child("targetPort")?.scalarText == portName)
        #expect(ports.first?.child("protocol")?.scalarText == "TCP")
        let expectedPort = try containerPort(named: portName)
        #expect(Int(ports.first?.child("port")?.scalarText ?? "") == expectedPort)
    }

    @Test func metricsPortStaysInsideCluster() throws {
        let external = try manifest("service.yaml")
        let internalOnly = try manifest("service-metrics.yaml")
        #expect(external.child("spec", "type")?.scalarText == "LoadBalancer")
        #expect(external.child("spec", "externalTrafficPolicy")?.scalarText == "Local")
        #expect(internalOnly.child("spec", "type")?.scalarText == "ClusterIP")
    }

    @Test(arguments: ["service.yaml", "service-metrics.yaml", "poddisruptionbudget.yaml", "deployment.yaml"])
    func selectorMatchesPodLabels(_ fileName: String) throws {
        let podLabels = try #require(try manifest("deployment.yaml").child("spec", "template", "metadata", "labels"))
        let object = try manifest(fileName)
        let selector = try #require(object.child("spec", "selector", "matchLabels") ?? object.child("spec", "selector"))
        #expect(!selector.keys.isEmpty)
        for key in selector.keys {
            #expect(podLabels.child(key)?.scalarText == selector.child(key)?.scalarText, "label \(key)")
        }
    }

    @Test func gracePeriodExceedsDrainTimeout() throws {
        let grace = try #require(Double(try podSpec().child("terminationGracePeriodSeconds")?.scalarText ?? ""))
        let drain = try configMapConfiguration().server.limits.drainTimeout
        #expect(grace > drain)
    }

    @Test func deploymentRunsUnprivileged() throws {
        let deployment = try manifest("deployment.yaml")
        let pod = try podSpec()
        let container = try container()
        #expect(deployment.child("spec", "replicas")?.scalarText == "3")
        #expect(pod.child("securityContext", "runAsNonRoot")?.scalarText == "true")
        #expect(pod.child("securityContext", "runAsUser")?.scalarText != "0")
        #expect(pod.child("automountServiceAccountToken")?.scalarText == "false")
        #expect(container.child("securityContext", "readOnlyRootFilesystem")?.scalarText == "true")
        #expect(container.child("securityContext", "allowPrivilegeEscalation")?.scalarText == "false")
        #expect(container.child("securityContext", "capabilities", "drop")?.items.first?.scalarText == "ALL")
        #expect(container.child("resources", "limits", "memory")?.scalarText != nil)
        #expect(container.child("resources", "requests", "cpu")?.scalarText != nil)
    }

    @Test func containerArgumentsNameConfigMapFile() throws {
        let arguments = try container().child("args")?.items.compactMap(\.scalarText) ?? []
        let configMount = try #require(item(named: "config", in: try container().child("volumeMounts")))
        let mountPath = try #require(configMount.child("mountPath")?.scalarText)
        #expect(arguments == ["serve", "--config", mountPath + "/mailcloak.yaml"])
    }

    // MARK: - systemd

    /// Writes the unit into `scratch` with ExecStart pointing at /bin/true, because
    /// `systemd-analyze verify` fails when the command does not exist on this machine.
    private func unitCopy(in scratch: ScratchFolder) throws -> String {
        let unit = try readDeployFile("deploy/systemd/mailcloak.service")
        let path = scratch.path + "/mailcloak.service"
        try writeFile(path, unit.replacing("ExecStart=/usr/local/bin/mailcloak ", with: "ExecStart=/bin/true "))
        return path
    }

    /// Returns the values of the unit's `key=` lines, in file order.
    private func unitValues(_ key: String) throws -> [String] {
        try readDeployFile("deploy/systemd/mailcloak.service").split(separator: "\n")
            .filter { $0.hasPrefix(key + "=") }
            .map { String($0.dropFirst(key.count + 1)) }
    }

    @Test(.enabled(if: findExecutable("systemd-analyze") != nil, "needs systemd-analyze (package systemd)"))
    func systemdUnitPassesVerify() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let unit = try unitCopy(in: scratch)
        let result = try runCommand(
            findExecutable("systemd-analyze")!, ["verify", "--man=no", "--generators=no", unit], scratch: scratch.path)
        #expect(result.status == 0, "\(result)")
        #expect(result.errorOutput.isEmpty, "\(result)")
    }

    @Test(.enabled(if: findExecutable("systemd-analyze") != nil, "needs systemd-analyze (package systemd)"))
    func systemdUnitSandboxRatesBelowTwo() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let unit = try unitCopy(in: scratch)
        // --threshold counts tenths of the exposure level that the report prints (20 is 2.0).
        let result = try runCommand(
            findExecutable("systemd-analyze")!, ["security", "--offline=true", "--threshold=20", unit],
            scratch: scratch.path)
        #expect(result.status == 0, "\(result)")
    }

    @Test func systemdUnitFitsServerLimits() throws {
        let defaults = ServerLimitsConfig()
        let stopTimeout = try #require(try unitValues("TimeoutStopSec").first)
        let stopSeconds = try #require(parseDuration(stopTimeout))
        let openFiles = try #require(Int(try unitValues("LimitNOFILE").first ?? ""))
        #expect(stopSeconds > defaults.drainTimeout)
        #expect(openFiles > defaults.maxConnections)
        #expect(try unitValues("User") == ["mailcloak"])
        #expect(try unitValues("ExecReload") == ["/bin/kill -HUP $MAINPID"])
        #expect(try unitValues("RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"])
        #expect(try unitValues("CapabilityBoundingSet") == [""])
        #expect(try unitValues("Restart") == ["on-failure"])
    }

    @Test(.enabled(if: findExecutable("systemd-sysusers") != nil && findExecutable("systemd-tmpfiles") != nil,
                   "needs systemd-sysusers and systemd-tmpfiles (package systemd)"))
    func sysusersAndTmpfilesCreateUserAndFolders() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let root = scratch.path + "/root"
        #expect(mkdir(root, 0o755) == 0)
        #expect(mkdir(root + "/etc", 0o755) == 0)

        let sysusers = try runCommand(
            findExecutable("systemd-sysusers")!,
            ["--root=" + root, deployKitRoot + "/deploy/systemd/mailcloak.sysusers"], scratch: scratch.path)
        #expect(sysusers.status == 0, "\(sysusers)")
        let passwd = try readDeployFile(root + "/etc/passwd").split(separator: "\n")
        let entry = try #require(passwd.first { $0.hasPrefix("mailcloak:") }).split(separator: ":")
        #expect(entry.last == "/usr/sbin/nologin")
        let groupID = try #require(UInt32(entry[3]))

        let tmpfiles = try runCommand(
            findExecutable("systemd-tmpfiles")!,
            ["--root=" + root, "--create", deployKitRoot + "/deploy/systemd/mailcloak.tmpfiles"], scratch: scratch.path)
        #expect(tmpfiles.status == 0, "\(tmpfiles)")
        for folder in ["/etc/mailcloak", "/etc/mailcloak/tls"] {
            var status = stat()
            #expect(stat(root + folder, &status) == 0, "\(folder) missing")
            #expect(status.st_mode & 0o7777 == 0o750, "\(folder) mode")
            #expect(status.st_uid == 0, "\(folder) owner")
            #expect(status.st_gid == groupID, "\(folder) group")
        }
    }

    // MARK: - HAProxy

    /// Returns the lines of haproxy.cfg without comments and surrounding white space.
    private func haproxyLines() throws -> [String] {
        try readDeployFile("deploy/haproxy/haproxy.cfg").split(separator: "\n").map {
            String($0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0])
                .trimmed(" \t")
        }.filter { !$0.isEmpty }
    }

    @Test(.enabled(if: findExecutable("haproxy") != nil, "needs haproxy (package haproxy)"))
    func haproxyAcceptsConfiguration() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let result = try runCommand(
            findExecutable("haproxy")!, ["-c", "-f", deployKitRoot + "/deploy/haproxy/haproxy.cfg"], scratch: scratch.path)
        #expect(result.status == 0, "\(result)")
        #expect(!result.output.contains("[WARNING]"), "\(result)")
        #expect(!result.errorOutput.contains("[WARNING]"), "\(result)")
    }

    @Test func haproxyTimeoutsOutlastIdleConnections() throws {
        let lines = try haproxyLines()
        let postfixPolicyMaxIdle = 300.0
        for side in ["client", "server"] {
            let line = try #require(lines.first { $0.hasPrefix("timeout \(side) ") })
            let seconds = try #require(parseDuration(String(line.dropFirst("timeout \(side) ".count))))
            #expect(seconds > ServerConfig().idleTimeout, "timeout \(side)")
            #expect(seconds > postfixPolicyMaxIdle, "timeout \(side)")
        }
    }

    @Test func haproxyChecksReadinessOnMetricsPort() throws {
        let lines = try haproxyLines()
        #expect(lines.contains("mode tcp"))
        #expect(lines.contains("option httpchk GET /readyz"))
        #expect(lines.contains("option redispatch 1"))
        #expect(lines.contains { $0.hasPrefix("retries ") })
        #expect(!lines.contains { $0.contains("shutdown-sessions") })
        let serverDefaults = try #require(lines.first { $0.hasPrefix("default-server ") }).split(separator: " ")
        let portIndex = try #require(serverDefaults.firstIndex(of: "port"))
        #expect(serverDefaults[portIndex - 1] == "check")
        #expect(UInt16(serverDefaults[portIndex + 1]) == MetricsConfig().port)
        #expect(serverDefaults.contains("send-proxy-v2"))
        let servers = lines.filter { $0.hasPrefix("server ") }
        #expect(servers.count == 3)
        for server in servers {
            #expect(server.hasSuffix(":10443"), "\(server)")
        }
    }

    /// The PROXY protocol v2 signature that starts every header (12 bytes).
    static let proxyV2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// Rewrites haproxy.cfg for a run on this machine. Backends move to 127.0.0.11
    /// to 127.0.0.13, frontends to free loopback ports, the runtime socket into
    /// `scratch`, and logs to standard output. The connection limits shrink to a
    /// tenth, because HAProxy needs two descriptors per connection and a test
    /// machine's hard limit may lie below 80000. Every other line stays as shipped,
    /// so the checks, timeouts and PROXY settings are the real ones.
    private func haproxyTestConfiguration(
        scratch: ScratchFolder, frontendPort: UInt16, statsPort: UInt16
    ) throws -> String {
        var text = try readDeployFile("deploy/haproxy/haproxy.cfg")
        let replacements = [
            ("log /dev/log local0", "log stdout format raw local0"),
            ("maxconn 40000", "maxconn 4000"),
            ("maxconn 20000", "maxconn 2000"),
            ("stats socket /run/haproxy/admin.sock mode 660", "stats socket \(scratch.path)/admin.sock mode 600"),
            ("bind :10443", "bind 127.0.0.1:\(frontendPort)"),
            ("bind 127.0.0.1:8404", "bind 127.0.0.1:\(statsPort)"),
            ("10.0.0.11:10443", "127.0.0.11:10443"),
            ("10.0.0.12:10443", "127.0.0.12:10443"),
            ("10.0.0.13:10443", "127.0.0.13:10443"),
        ]
        for (shipped, local) in replacements {
            #expect(text.contains(shipped), "haproxy.cfg no longer contains \(shipped)")
            text = text.replacing(shipped, with: local)
        }
        return text
    }

    /// Returns the `status` column of each server of backend `mailcloak` from HAProxy's `show stat`.
    private func haproxyServerStates(_ socketPath: String) throws -> [String: String] {
        let lines = try queryUnixSocket(socketPath, "show stat").split(separator: "\n")
        guard let header = lines.first, header.hasPrefix("# ") else { return [:] }
        let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false)
        guard let statusIndex = columns.firstIndex(of: "status") else { return [:] }
        var states: [String: String] = [:]
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            if fields.count > statusIndex, fields[0] == "mailcloak", fields[1].hasPrefix("mailcloak") {
                states[String(fields[1])] = String(fields[statusIndex])
            }
        }
        return states
    }

    @Test(.enabled(if: findExecutable("haproxy") != nil, "needs haproxy (package haproxy)"))
    func haproxyRoutesOnlyToReadyServers() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        // mailcloak1 and mailcloak3 are ready. mailcloak2 returns 503 on /readyz, as it does while it drains.
        let ready = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n"
        let draining = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndraining\n"
        var backends: [RecordingServer] = []
        var checks: [RecordingServer] = []
        defer { (backends + checks).forEach { $0.stop() } }
        for (index, reply) in [ready, draining, ready].enumerated() {
            let host = "127.0.0.1\(index + 1)"
            backends.append(try RecordingServer(host: host, port: 10443, reply: ""))
            checks.append(try RecordingServer(host: host, port: MetricsConfig().port, reply: reply))
        }

        let frontendPort = try freePort(pair: false)
        let statsPort = try freePort(pair: false, after: frontendPort)
        let configuration = try haproxyTestConfiguration(
            scratch: scratch, frontendPort: frontendPort, statsPort: statsPort)
        try writeFile(scratch.path + "/haproxy.cfg", configuration)
        let haproxy = try launchProcess(
            findExecutable("haproxy")!, ["-db", "-f", scratch.path + "/haproxy.cfg"],
            outputPath: scratch.path + "/haproxy.log")
        defer { stopProcess(haproxy) }

        // Wait until the health checks mark mailcloak2 down (fall 2 x inter 2s) and the others up.
        let expectedStates = ["mailcloak1": "UP", "mailcloak2": "DOWN", "mailcloak3": "UP"]
        var states: [String: String] = [:]
        let deadline = monotonicNow() + 30
        while monotonicNow() < deadline {
            states = (try? haproxyServerStates(scratch.path + "/admin.sock")) ?? [:]
            if states == expectedStates { break }
            usleep(200_000)
        }
        try #require(states == expectedStates, "server states \(states); log: \((try? readDeployFile(scratch.path + "/haproxy.log")) ?? "")")

        let connectionCount = 6
        for index in 0..<connectionCount {
            try sendOnce(port: frontendPort, "probe \(index)\n")
        }
        #expect(backends[1].connections.isEmpty, "a server marked down got connections")
        let routed = backends[0].connections + backends[2].connections
        #expect(routed.count == connectionCount)
        for bytes in routed {
            try #require(bytes.count >= 28, "connection too short for a PROXY v2 header: \(bytes)")
            #expect(Array(bytes.prefix(12)) == Self.proxyV2Signature, "connection without PROXY v2 header")
            // Version 2 with command PROXY, then TCP over IPv4 with 12 address bytes.
            #expect(bytes[12] == 0x21)
            #expect(bytes[13] == 0x11)
            #expect(Array(bytes[16..<20]) == [127, 0, 0, 1], "source address in header")
            #expect(String(decoding: bytes.dropFirst(28), as: UTF8.self).hasPrefix("probe "))
        }

        // Health checks reach the metrics port as plain HTTP, without a PROXY header.
        for check in checks {
            let requests = check.connections
            #expect(!requests.isEmpty)
            for request in requests {
                #expect(String(decoding: request, as: UTF8.self).hasPrefix("GET /readyz HTTP/1."))
            }
        }
    }

    // MARK: - Postfix node

    /// Creates a private Postfix configuration folder with the node's main.cf lines and Debian's master.cf.
    private func postfixConfigFolder(in scratch: ScratchFolder) throws -> String {
        let folder = scratch.path + "/postfix"
        #expect(mkdir(folder, 0o755) == 0)
        try writeFile(folder + "/main.cf", try readDeployFile("deploy/postfix-node/main.cf.snippet"))
        try writeFile(folder + "/master.cf", try readDeployFile("/etc/postfix/master.cf"))
        return folder
    }

    private func postconfValue(_ name: String, folder: String, scratch: ScratchFolder) throws -> String {
        let result = try runCommand(findExecutable("postconf")!, ["-c", folder, "-h", name], scratch: scratch.path)
        #expect(result.status == 0, "\(result)")
        #expect(result.errorOutput.isEmpty, "\(result)")
        return result.output.trimmed("\n")
    }

    @Test(.enabled(if: findExecutable("postconf") != nil, "needs postconf (package postfix)"))
    func postfixNodeLinesParseWithoutWarnings() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let folder = try postfixConfigFolder(in: scratch)
        let result = try runCommand(findExecutable("postconf")!, ["-c", folder, "-n"], scratch: scratch.path)
        #expect(result.status == 0, "\(result)")
        #expect(result.errorOutput.isEmpty, "\(result)")
        let expected = [
            "virtual_mailbox_domains = socketmap:inet:127.0.0.1:10027:domain",
            "virtual_mailbox_maps = socketmap:inet:127.0.0.1:10027:mailbox",
            "virtual_alias_maps = socketmap:inet:127.0.0.1:10027:alias",
            "virtual_alias_domains =",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, $mailcloak_policy",
        ]
        let lines = result.output.split(separator: "\n").map(String.init)
        for line in expected {
            #expect(lines.contains(line), "postconf -n lacks \(line)")
        }
    }

    @Test(.enabled(if: findExecutable("postconf") != nil, "needs postconf (package postfix)"))
    func postfixPolicyOverridesAreKnown() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let folder = try postfixConfigFolder(in: scratch)
        let restriction = try postconfValue("mailcloak_policy", folder: folder, scratch: scratch)
        let attributes = try #require(PostfixPolicyService(restriction))
        #expect(attributes.endpoint == "inet:127.0.0.1:10027")
        for (name, value) in attributes.overrides {
            #expect(PostfixPolicyService.knownAttributes.contains(name), "unknown attribute \(name)=\(value)")
        }
        let values = Dictionary(attributes.overrides, uniquingKeysWith: { _, last in last })
        let action = try #require(values["default_action"])
        #expect(action.hasPrefix("451 4."))
        #expect(action.split(separator: " ").count > 2, "a bare code counts as a permit in Postfix")
        let timeout = try #require(values["timeout"].flatMap(parseDuration))
        #expect(timeout > KeycloakConfig().requestTimeout)
        let maxIdle = try #require(values["max_idle"].flatMap(parseDuration))
        #expect(maxIdle < ServerConfig().idleTimeout)
    }

    @Test(.enabled(if: findExecutable("postmap") != nil && findExecutable("postconf") != nil,
                   "needs postmap and postconf (package postfix)"))
    func postfixMapsReachSocketmapServer() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let folder = try postfixConfigFolder(in: scratch)
        let responder = try SocketmapResponder(answers: [
            "domain example.com": "example.com",
            "mailbox alice@example.com": "alice@example.com",
            "alias sales@example.com": "alice@example.com",
        ])
        defer { responder.stop() }
        let cases = [
            ("virtual_mailbox_domains", "example.com", "example.com"),
            ("virtual_mailbox_maps", "alice@example.com", "alice@example.com"),
            ("virtual_alias_maps", "sales@example.com", "alice@example.com"),
        ]
        for (parameter, key, expected) in cases {
            let table = try postconfValue(parameter, folder: folder, scratch: scratch)
                .replacing("127.0.0.1:10027", with: "127.0.0.1:\(responder.port)")
            let result = try runCommand(
                findExecutable("postmap")!, ["-c", folder, "-q", key, table], scratch: scratch.path, timeout: 30)
            #expect(result.status == 0, "\(parameter): \(result)")
            #expect(result.output == expected + "\n", "\(parameter): \(result)")
        }
    }

    @Test(.enabled(if: getuid() == 0 && findExecutable("postfix") != nil,
                   "needs root and Postfix to start a private instance"))
    func postfixDefersWhileClusterIsDown() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let folder = try postfixConfigFolder(in: scratch)
        // A bound port that refuses connections stands for an unreachable cluster.
        let cluster = try bindLoopback(listening: false)
        defer { close(cluster.descriptor) }
        let policy = try postconfValue("mailcloak_policy", folder: folder, scratch: scratch)
            .replacing("127.0.0.1:10027", with: "127.0.0.1:\(cluster.port)")
        let restrictions = try postconfValue("smtpd_recipient_restrictions", folder: folder, scratch: scratch)
        let smtpPort = try freePort(pair: true)
        // Postfix's delivery user must be able to reach folders below the instance.
        #expect(chmod(scratch.path, 0o711) == 0)
        let instance = scratch.path + "/instance"
        let script = deployKitRoot + "/scripts/testenv/postfix.sh"
        let start = try runCommand(
            "/bin/bash",
            [script, "start", instance, String(smtpPort), "127.0.0.1:\(cluster.port)",
             "mailcloak_policy=\(policy)", "smtpd_recipient_restrictions=\(restrictions)"],
            scratch: scratch.path, timeout: 60)
        defer { _ = try? runCommand("/bin/bash", [script, "stop", instance], scratch: scratch.path, timeout: 60) }
        try #require(start.status == 0, "\(start)")

        // Port SMTP_PORT runs the node's recipient restrictions. The lookup of
        // the recipient's domain fails first, which is a temporary error.
        var inbound = try SMTPClient(port: smtpPort)
        defer { inbound.close() }
        #expect(try inbound.readReply().hasPrefix("220 "))
        #expect(try inbound.send("EHLO client.test").hasPrefix("250"))
        #expect(try inbound.send("MAIL FROM:<sender@example.org>").hasPrefix("250 "))
        let recipientReply = try inbound.send("RCPT TO:<alice@example.com>")
        #expect(recipientReply.hasPrefix("451 4.3.0 "), "\(recipientReply)")

        // Port SMTP_PORT+1 sends only a policy request, at MAIL FROM. Every try
        // fails, so Postfix replies with default_action.
        var policyOnly = try SMTPClient(port: smtpPort + 1)
        defer { policyOnly.close() }
        #expect(try policyOnly.readReply().hasPrefix("220 "))
        #expect(try policyOnly.send("EHLO client.test").hasPrefix("250"))
        let senderReply = try policyOnly.send("MAIL FROM:<sender@example.org>")
        #expect(senderReply.hasPrefix("451 4.3.5 "), "\(senderReply)")
        #expect(senderReply.hasSuffix("Policy service unavailable"), "\(senderReply)")
    }

    /// Returns a port between 20000 and 32000 that is free on 127.0.0.1 right now, and with
    /// `pair` one whose next port is free too. The search starts at a point that depends on
    /// the process id and lies above `after`, so concurrent runs and calls rarely collide.
    private func freePort(pair: Bool, after: UInt16 = 0) throws -> UInt16 {
        let start = max(UInt16(20000 + getpid() % 5000 * 2), after + 2)
        for candidate in stride(from: start, to: 32000, by: 2) {
            if isFree(candidate) && (!pair || isFree(candidate + 1)) { return candidate }
        }
        throw DeployKitError(description: "no free port between \(start) and 32000")
    }

    private func isFree(_ port: UInt16) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    // MARK: - Dovecot

    @Test(.enabled(if: findExecutable("doveconf") != nil, "needs doveconf (package dovecot-core)"))
    func dovecotAuthFileParses() throws {
        let scratch = try ScratchFolder()
        defer { scratch.remove() }
        let configuration = """
            base_dir = \(scratch.path)/run
            protocols =
            ssl = no
            !include \(deployKitRoot)/deploy/dovecot/auth-mailcloak.conf.ext
            userdb {
              driver = static
              args = uid=nobody gid=nogroup home=/nonexistent
            }

            """
        try writeFile(scratch.path + "/dovecot.conf", configuration)
        let result = try runCommand(
            findExecutable("doveconf")!, ["-n", "-c", scratch.path + "/dovecot.conf"], scratch: scratch.path)
        #expect(result.status == 0, "\(result)")
        #expect(result.errorOutput.isEmpty, "\(result)")
        #expect(result.output.contains("auth_mechanisms = plain login xoauth2 oauthbearer"))
        #expect(result.output.contains("driver = oauth2"))
        #expect(result.output.contains("args = /etc/dovecot/dovecot-oauth2.conf.ext"))
        #expect(result.output.contains("driver = checkpassword"))
        #expect(result.output.contains("args = /usr/local/bin/mailcloak-checkpassword"))
    }

    /// Dovecot 2.3 reads these settings from an oauth2 args file (`setting_defs` in src/auth/db-oauth2.c);
    /// it stops the auth process on any other name.
    static let dovecotOAuth2Settings: Set<String> = [
        "tokeninfo_url", "grant_url", "introspection_url", "scope", "force_introspection", "introspection_mode",
        "username_format", "username_attribute", "pass_attrs", "local_validation_key_dict", "active_attribute",
        "active_value", "client_id", "client_secret", "issuers", "openid_configuration_url", "timeout_msecs",
        "max_idle_time_msecs", "max_parallel_connections", "max_pipelined_requests", "send_auth_headers",
        "use_grant_password", "tls_ca_cert_file", "tls_ca_cert_dir", "tls_cert_file", "tls_key_file",
        "tls_cipher_suite", "tls_allow_invalid_cert", "rawlog_dir", "debug",
    ]

    @Test func dovecotOAuth2FileUsesKnownSettings() throws {
        let lines = try readDeployFile("deploy/dovecot/dovecot-oauth2.conf.ext").split(separator: "\n")
            .map { $0.trimmed(" \t") }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        var settings: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmed(" \t") }
            try #require(parts.count == 2, "not a setting: \(line)")
            #expect(Self.dovecotOAuth2Settings.contains(parts[0]), "unknown setting \(parts[0])")
            settings[parts[0]] = parts[1]
        }
        #expect(settings["introspection_mode"] == "post")
        #expect(settings["introspection_url"]?.hasSuffix("/protocol/openid-connect/token/introspect") == true)
        #expect(settings["active_attribute"] == "active")
        #expect(settings["active_value"] == "true")
        #expect(settings["force_introspection"] == "yes")
        #expect(settings["tls_ca_cert_file"] != nil)
    }

    @Test func dovecotSQLQueryReadsAppsColumns() throws {
        let text = try readDeployFile("deploy/dovecot/dovecot-sql.conf.ext")
        for column in ["id", "secret_hash", "enabled"] {
            #expect(text.contains(column), "query lacks apps.\(column)")
        }
        #expect(text.contains("FROM apps"))
        #expect(text.contains("'{ARGON2ID}'"))
    }
}

/// A `check_policy_service { ENDPOINT, name=value, ... }` restriction, split the
/// way Postfix 3.7 does (src/smtpd/smtpd_check.c policy_client_register and
/// src/global/attr_override.c): items are separated by commas or white space
/// outside braces, and an item in braces may hold spaces (`{ name = a b c }`).
struct PostfixPolicyService {
    /// The per-service attributes that policy_client_register accepts; Postfix
    /// stops smtpd with "unknown option" for any other name.
    static let knownAttributes: Set<String> = [
        "timeout", "max_idle", "max_ttl", "retry_delay", "request_limit", "try_limit", "default_action",
        "policy_context",
    ]

    let endpoint: String
    let overrides: [(String, String)]

    /// Returns nil when the text is not such a restriction, or an item is not `name=value`.
    init?(_ restriction: String) {
        let prefix = "check_policy_service "
        guard restriction.hasPrefix(prefix) else { return nil }
        let group = restriction.dropFirst(prefix.count).trimmed(" \t")
        guard group.hasPrefix("{"), group.hasSuffix("}") else { return nil }
        var items = Self.splitItems(String(group.dropFirst().dropLast()))
        guard !items.isEmpty else { return nil }
        endpoint = items.removeFirst()
        var pairs: [(String, String)] = []
        for item in items {
            var text = item
            if text.hasPrefix("{") && text.hasSuffix("}") {
                text = String(text.dropFirst().dropLast())
            }
            let parts = text.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            pairs.append((parts[0].trimmed(" \t"), parts[1].trimmed(" \t")))
        }
        overrides = pairs
    }

    private static func splitItems(_ text: String) -> [String] {
        var items: [String] = []
        var current = ""
        var depth = 0
        for character in text {
            if character == "{" { depth += 1 }
            if character == "}" { depth -= 1 }
            if depth == 0 && (character == "," || character == " " || character == "\t") {
                if !current.isEmpty { items.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { items.append(current) }
        return items
    }
}

extension StringProtocol {
    /// Returns the text without the given characters at either end.
    func trimmed(_ characters: String) -> String {
        let set = Set(characters)
        return String(String(self).drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
