// resolve
