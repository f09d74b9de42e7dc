//! DHCPv4 server (placeholder while building).
