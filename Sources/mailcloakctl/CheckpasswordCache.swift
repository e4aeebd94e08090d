// The outage cache of `mailcloakctl checkpassword --cache-dir DIR`. It keeps
// the secret hash of each app that logged in while PostgreSQL was reachable,
// one file per app. The app can then still log in while PostgreSQL is
// unreachable, as mailcloak's own decisions go on from its snapshot. An entry
// serves for at most `maxStale` seconds after the login that wrote it. The
// folder and its files must belong to the user that runs the command
// (Dovecot's auth process: dovecot) and be closed to every other user,
// because a planted entry would admit anyone with its secret during an
// outage.
#if canImport(Glibc)
import Glibc
#endif

struct CheckpasswordCache {
    let folder: String
    let maxStale: Double

    /// The first line of every entry; another first line makes the entry unusable.
    static let header = "mailcloak-checkpassword-cache 1"
    /// Largest entry read, in bytes: an id of 128 bytes and a PHC string fit many times.
    static let maxEntryLength = 4096

    /// An entry found fresh enough, or why there is none.
    enum Lookup: Equatable {
        case hit(secretHash: String, age: Double)
        case miss(reason: String)
    }

    private func entryPath(_ appID: String) -> String { folder + "/app-" + appID }

    /// Returns nil when the folder is a directory of this user that no other user may write to,
    /// or else what is wrong with it.
    private func folderProblem() -> String? {
        var status = stat()
        guard lstat(folder, &status) == 0 else {
            return "cannot use the cache folder \(folder): \(String(cString: strerror(errno)))"
        }
        if status.st_mode & S_IFMT == S_IFLNK {
            return "the cache folder \(folder) is a symbolic link; give the folder itself"
        }
        guard status.st_mode & S_IFMT == S_IFDIR else { return "the cache folder \(folder) is not a directory" }
        guard status.st_uid == geteuid() else {
            return "the cache folder \(folder) belongs to user id \(status.st_uid), not to this process's \(geteuid())"
        }
        // Entry names are app ids, so a folder that others may read shows them which apps log in.
        guard status.st_mode & 0o077 == 0 else {
            let mode = String(status.st_mode & 0o777, radix: 8)
            return "the cache folder \(folder) is open to other users (mode 0\(mode)); make it mode 0700"
        }
        return nil
    }

    /// Writes the entry of `appID` with `secretHash` and the time now. Returns what went wrong, or nil.
    func store(appID: String, secretHash: String, now: Double = Double(time(nil))) -> String? {
        if let problem = folderProblem() { return problem }
        let text = "\(Self.header)\n\(Int64(now))\n\(appID)\n\(secretHash)\n"
        let temporary = folder + "/.tmp-\(getpid())-" + appID
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            return "cannot write \(temporary): \(String(cString: strerror(errno)))"
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let writeError = errno
        close(descriptor)
        guard written == bytes.count else {
            unlink(temporary)
            return "cannot write \(temporary): \(written < 0 ? String(cString: strerror(writeError)) : "short write")"
        }
        guard rename(temporary, entryPath(appID)) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            return "cannot rename \(temporary) to \(entryPath(appID)): \(reason)"
        }
        return nil
    }

    /// Deletes the entry of `appID`, when there is one. Returns what went wrong, or nil.
    func remove(appID: String) -> String? {
        guard unlink(entryPath(appID)) == 0 || errno == ENOENT else {
            return "cannot delete \(entryPath(appID)): \(String(cString: strerror(errno)))"
        }
        return nil
    }

    /// Deletes the entry of `appID` when its hash differs from `secretHash`, the one PostgreSQL has
    /// now, so that a replaced secret stops working from the cache too. Returns what went wrong, or nil.
    func forgetOtherHash(appID: String, secretHash: String) -> String? {
        guard case .success(let entry) = readEntry(appID), entry.secretHash != secretHash else { return nil }
        return remove(appID: appID)
    }

    /// Returns the cached hash of `appID` when its entry is at most `maxStale` seconds old.
    func lookUp(appID: String, now: Double = Double(time(nil))) -> Lookup {
        let entry: Entry
        switch readEntry(appID) {
        case .success(let found): entry = found
        case .failure(let unusable): return .miss(reason: unusable.reason)
        }
        let age = now - Double(entry.stamp)
        guard age >= -60 else { return .miss(reason: "ignoring \(entryPath(appID)): written in the future") }
        guard age <= maxStale else {
            return .miss(reason: "the cached hash of app \(appID) is \(Int(age)) s old, more than --max-stale \(Int(maxStale)) s")
        }
        return .hit(secretHash: entry.secretHash, age: max(age, 0))
    }

    /// One entry as written by `store`: the time of its login and the hash.
    private struct Entry {
        let stamp: Int64
        let secretHash: String
    }

    /// The reason an entry cannot be used.
    private struct Unusable: Error {
        let reason: String
    }

    /// Reads the entry of `appID`, whatever its age, from a folder and a file that pass the ownership checks.
    private func readEntry(_ appID: String) -> Result<Entry, Unusable> {
        if let problem = folderProblem() { return .failure(Unusable(reason: problem)) }

        let path = entryPath(appID)
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { return .failure(Unusable(reason: "no cached hash for app \(appID)")) }
            return .failure(Unusable(reason: "cannot read \(path): \(String(cString: strerror(errno)))"))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG,
            status.st_uid == geteuid(), status.st_mode & 0o077 == 0
        else {
            return .failure(Unusable(reason: "ignoring \(path): not a regular file of this user with mode 0600"))
        }

        var buffer = [UInt8](repeating: 0, count: Self.maxEntryLength + 1)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0, count <= Self.maxEntryLength else {
            return .failure(Unusable(
                reason: "ignoring \(path): empty, unreadable or longer than \(Self.maxEntryLength) bytes"))
        }
        let lines = String(decoding: buffer[..<count], as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count == 5, lines[0] == Self.header, let stamp = Int64(lines[1]), lines[2] == appID,
            !lines[3].isEmpty, lines[4].isEmpty
        else {
            return .failure(Unusable(reason: "ignoring \(path): not an entry of this format"))
        }
        return .success(Entry(stamp: stamp, secretHash: String(lines[3])))
    }
}
