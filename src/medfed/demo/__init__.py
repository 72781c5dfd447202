"""The demo consortium: a throwaway CA, a coordinator and four hospital nodes on loopback."""
