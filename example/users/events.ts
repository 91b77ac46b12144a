import { IntegrationEvent } from '../../src'; // in your service: from 'dapr-outbox'

/** The article's event: a user registered. Topic: 'RegisterUserEvent' (the class name). */
export class RegisterUserEvent extends IntegrationEvent {
  constructor(
    public account: string,
    public mobile: string,
  ) {
    super();
  }
}
