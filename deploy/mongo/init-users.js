// First start of the MongoDB container (docker-entrypoint-initdb.d): one user per service, with
// readWrite on its own database only, so a service's credentials reach no other service's data.
// Passwords come from the container's environment (docker-compose.yml, .env), never from here.
for (const svc of ["registry", "payments", "subsidy", "scoring", "notices"]) {
  const name = "enrol_" + svc;
  const pwd = process.env["MONGO_PASSWORD_" + svc.toUpperCase()];
  if (!pwd) throw new Error("MONGO_PASSWORD_" + svc.toUpperCase() + " is not set");
  const target = db.getSiblingDB(name);
  if (!target.getUser(svc)) {
    target.createUser({user: svc, pwd: pwd, roles: [{role: "readWrite", db: name}]});
  }
}
