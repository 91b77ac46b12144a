// Express's default error handler prints stack traces unless NODE_ENV is 'test'.
process.env.NODE_ENV = 'test';
