// Switching from the starting user (often root, to bind listeners) to the
// configured user and group. Runs once at start, after every listener is bound
// and before the reactor threads run. glibc applies setgid and setuid to every
// thread of the process, so worker threads started earlier switch too.
import Log
#if canImport(Glibc)
import Glibc
#endif

/// Changes the process's user and group.
public enum PrivilegeDrop {
    /// Sets the supplementary groups, the group, then the user, and checks that root cannot be regained.
    ///
    /// - Parameters:
    ///   - user: user name to switch to; nil keeps the current user.
    ///   - group: group name to switch to; nil means the user's primary group, or the current group without a user.
    /// - Returns: the user and group ids now in effect.
    /// - Throws: `ReactorError.privilegeDropFailed` naming the name or the step that failed.
    @discardableResult
    public static func apply(user: String?, group: String?) throws(ReactorError) -> (uid: uid_t, gid: gid_t) {
        guard user != nil || group != nil else { return (getuid(), getgid()) }
        var uid = getuid()
        var gid = getgid()
        if let user {
            guard let entry = getpwnam(user) else { throw .privilegeDropFailed("unknown user \(user) in server.user") }
            uid = entry.pointee.pw_uid
            gid = entry.pointee.pw_gid
        }
        if let group {
            guard let entry = getgrnam(group) else { throw .privilegeDropFailed("unknown group \(group) in server.group") }
            gid = entry.pointee.gr_gid
        }

        if let user {
            guard initgroups(user, gid) == 0 else { throw failure("initgroups \(user)") }
        } else {
            var only = gid
            guard setgroups(1, &only) == 0 else { throw failure("setgroups \(gid)") }
        }
        guard setgid(gid) == 0 else { throw failure("setgid \(gid)") }
        guard setuid(uid) == 0 else { throw failure("setuid \(uid)") }

        if uid != 0, setuid(0) == 0 {
            throw .privilegeDropFailed("root could be regained after setuid \(uid)")
        }
        return (uid, gid)
    }

    private static func failure(_ step: String) -> ReactorError {
        let code = errno
        return .privilegeDropFailed("\(step): \(String(cString: strerror(code))) (errno \(code))")
    }
}
