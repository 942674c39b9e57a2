//! What the agent says about its host (`HostFacts`): hostname, OS, architecture, version.

use certmesh_proto::fleet::HostFacts;

/// The host's name: the kernel's, else `/etc/hostname`, else `localhost`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The facts sent in `Hello`, `Heartbeat` and `Enroll`.
pub fn facts() -> HostFacts {
    HostFacts {
        hostname: hostname(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_name_this_host_and_build() {
        let facts = facts();
        assert!(!facts.hostname.is_empty());
        assert_eq!(facts.os, std::env::consts::OS);
        assert_eq!(facts.version, env!("CARGO_PKG_VERSION"));
    }
}
